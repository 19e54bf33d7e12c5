from pathlib import Path

from labmake.core import logs
from labmake.sdg import multiple_choice

with logs.stage(snakemake.log[0], "multiple_choice"):
    multiple_choice.aggregate([Path(p) for p in snakemake.input.leaves], Path(snakemake.output[0]))
