from pathlib import Path

from labmake.core import logs
from labmake.core.config import MixConfig, NearDuplicateConfig, section
from labmake.sdg import mix

with logs.stage(snakemake.log[0], "mix"):
    mix.run(
        [Path(p) for p in snakemake.input.seeds],
        [Path(p) for p in snakemake.input.filtered],
        section(MixConfig, snakemake.params.mix, "mix"),
        snakemake.params.seed,
        {name: Path(snakemake.output[name]) for name in ("knowledge", "skills", "eval")},
        Path(snakemake.output.stats),
        section(NearDuplicateConfig, snakemake.params.near_duplicate, "filter.near_duplicate"),
    )
