from pathlib import Path

from labmake import filters, logs
from labmake.config import FilterConfig, section

with logs.stage(snakemake.log[0], "filter"):
    filters.run(
        Path(snakemake.input.seeds),
        Path(snakemake.input.generated),
        section(FilterConfig, snakemake.params.filter, "filter"),
        Path(snakemake.output.samples),
        Path(snakemake.output.stats),
    )
