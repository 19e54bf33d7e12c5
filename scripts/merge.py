from pathlib import Path

from labmake.core import logs
from labmake.training import merge

with logs.stage(snakemake.log[0], "merge", snakemake.threads):
    merge.merge(
        Path(snakemake.input.base),
        [Path(p) for p in snakemake.input.phases],
        Path(snakemake.output[0]),
        provenance={"base_dir": snakemake.input.base},
    )
