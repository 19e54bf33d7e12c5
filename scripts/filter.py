from pathlib import Path

from labmake.core import logs
from labmake.core.config import FilterConfig, section
from labmake.sdg import filters

with logs.stage(snakemake.log[0], "filter"):
    filters.run(
        Path(snakemake.input.seeds),
        Path(snakemake.input.generated),
        section(FilterConfig, snakemake.params.filter, "filter"),
        Path(snakemake.output.samples),
        Path(snakemake.output.stats),
    )
