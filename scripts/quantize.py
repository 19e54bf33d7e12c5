from pathlib import Path

from labmake.core import logs
from labmake.export import quantize

with logs.stage(snakemake.log[0], "quantize", snakemake.threads):
    quantize.quantize(
        Path(snakemake.input.f16), Path(snakemake.output[0]), snakemake.wildcards.quant
    )
