from pathlib import Path

from labmake import logs, student
from labmake.config import StudentConfig, section

with logs.stage(snakemake.log[0], "base_model", snakemake.threads):
    cfg = section(StudentConfig, snakemake.params.student, "student")
    student.convert_gguf_to_hf(student.resolve_gguf(cfg.gguf), Path(snakemake.output[0]))
