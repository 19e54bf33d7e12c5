from pathlib import Path

from labmake import export, logs

with logs.stage(snakemake.log[0], "merge", snakemake.threads):
    export.merge(
        Path(snakemake.input.base),
        [Path(p) for p in snakemake.input.phases],
        Path(snakemake.output[0]),
        provenance={"base_dir": snakemake.input.base},
    )
