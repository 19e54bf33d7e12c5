from pathlib import Path

from labmake import evaluate, logs
from labmake.config import EvaluateConfig, section

with logs.stage(snakemake.log[0], "evaluate", snakemake.threads):
    evaluate.run(
        Path(snakemake.input.eval),
        Path(snakemake.input.base),
        Path(snakemake.input.tuned),
        dict(zip(snakemake.params.quants, map(Path, snakemake.input.ggufs), strict=True)),
        section(EvaluateConfig, snakemake.params.evaluate, "evaluate"),
        Path(snakemake.output[0]),
    )
