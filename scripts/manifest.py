from pathlib import Path

from labmake import logs, provenance

with logs.stage(snakemake.log[0], "manifest"):
    info = provenance.collect(
        params=snakemake.params.config,
        seeds_paths=[Path(p) for p in snakemake.input.seeds],
        generated_paths=[Path(p) for p in snakemake.input.generated],
        mix_stats=Path(snakemake.input.mix_stats),
        base_dir=Path(snakemake.input.base),
        taxonomy_root=snakemake.params.taxonomy,
    )
    outputs = [*snakemake.input.ggufs, snakemake.input.report, *snakemake.input.data]
    provenance.write_manifest(Path(snakemake.output[0]), info, [Path(p) for p in outputs])
