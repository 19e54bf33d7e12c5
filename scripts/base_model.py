from pathlib import Path

from labmake.core import logs
from labmake.core.config import StudentConfig, section
from labmake.core.models import resolve_gguf
from labmake.training import student

with logs.stage(snakemake.log[0], "base_model", snakemake.threads):
    cfg = section(StudentConfig, snakemake.params.student, "student")
    student.convert_gguf_to_hf(resolve_gguf(cfg.gguf), Path(snakemake.output[0]))
