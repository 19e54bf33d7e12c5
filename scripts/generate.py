from pathlib import Path

from labmake import generate, logs
from labmake.config import GenerateConfig, TeacherConfig, section

with logs.stage(snakemake.log[0], "generate", snakemake.threads):
    generate.run(
        Path(snakemake.input.seeds),
        Path(snakemake.output[0]),
        section(TeacherConfig, snakemake.params.teacher, "teacher"),
        section(GenerateConfig, snakemake.params.generate, "generate"),
        snakemake.params.seed,
    )
