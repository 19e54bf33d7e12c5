from pathlib import Path

from labmake import export, logs

with logs.stage(snakemake.log[0], "quantize", snakemake.threads):
    export.quantize(Path(snakemake.input.f16), Path(snakemake.output[0]), snakemake.wildcards.quant)
