from pathlib import Path

from labmake.core import logs
from labmake.core.config import EvaluateConfig, section
from labmake.evaluation import report

with logs.stage(snakemake.log[0], "report"):
    report.run(
        dict(snakemake.input.items()),
        cfg=section(EvaluateConfig, snakemake.params.evaluate, "evaluate"),
        seed=snakemake.params.seed,
        params=snakemake.config,
        out_json=Path(snakemake.output.json),
        out_html=Path(snakemake.output.html),
    )
