from pathlib import Path

from labmake.core import logs
from labmake.core.config import EvaluateConfig, section
from labmake.evaluation import evaluate

with logs.stage(snakemake.log[0], f"evaluate {snakemake.wildcards.model}", snakemake.threads):
    evaluate.run_model(
        snakemake.wildcards.model,
        Path(snakemake.input.eval),
        section(EvaluateConfig, snakemake.params.evaluate, "evaluate"),
        snakemake.params.seed,
        Path(snakemake.output[0]),
        phases=snakemake.params.phases,
        student_gguf=snakemake.params.student,
    )
