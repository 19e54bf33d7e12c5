from pathlib import Path

from labmake.core import logs
from labmake.core.config import MultipleChoiceConfig, TeacherConfig, section
from labmake.sdg import multiple_choice

with logs.stage(snakemake.log[0], "generate_multiple_choice", snakemake.threads):
    multiple_choice.run(
        Path(snakemake.input.seeds),
        Path(snakemake.output[0]),
        section(TeacherConfig, snakemake.params.teacher, "teacher"),
        section(MultipleChoiceConfig, snakemake.params.multiple_choice, "evaluate.multiple_choice"),
        snakemake.params.seed,
    )
