from pathlib import Path

from labmake.core import logs
from labmake.core.config import SeedsConfig, StudentConfig, TeacherConfig, section
from labmake.taxonomy import seeds

with logs.stage(snakemake.log[0], "seeds"):
    seeds.run(
        Path(snakemake.params.root),
        snakemake.wildcards.leaf,
        section(SeedsConfig, snakemake.params.seeds, "seeds"),
        section(TeacherConfig, snakemake.params.tokenizer["teacher"], "teacher"),
        section(StudentConfig, snakemake.params.tokenizer["student"], "student"),
        Path(snakemake.output[0]),
    )
