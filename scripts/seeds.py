from pathlib import Path

from labmake import logs, seeds
from labmake.config import SeedsConfig, section

with logs.stage(snakemake.log[0], "seeds"):
    seeds.run(
        Path(snakemake.params.root),
        snakemake.wildcards.leaf,
        section(SeedsConfig, snakemake.params.seeds, "seeds"),
        Path(snakemake.output[0]),
    )
