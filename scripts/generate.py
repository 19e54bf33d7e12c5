from pathlib import Path

from labmake.core import logs
from labmake.core.config import GenerateConfig, TeacherConfig, section
from labmake.sdg import generation

with logs.stage(snakemake.log[0], "generate", snakemake.threads):
    generation.run(
        Path(snakemake.input.seeds),
        Path(snakemake.output[0]),
        section(TeacherConfig, snakemake.params.teacher, "teacher"),
        section(GenerateConfig, snakemake.params.generate, "generate"),
        snakemake.params.seed,
    )
