from pathlib import Path

from labmake.core import logs
from labmake.evaluation import provenance

with logs.stage(snakemake.log[0], "manifest"):
    outputs = sorted(
        {*snakemake.input.ggufs, snakemake.input.f16, snakemake.input.report, *snakemake.input.data}
    )
    provenance.write_manifest(
        Path(snakemake.output[0]), Path(snakemake.input.f16), [Path(p) for p in outputs]
    )
