from pathlib import Path

from labmake.core import logs
from labmake.evaluation import provenance
from labmake.export import writer
from labmake.training import merge

with logs.stage(snakemake.log[0], "gguf"):
    merged = Path(snakemake.input.merged)
    writer.write_gguf(
        merged,
        Path(snakemake.output[0]),
        provenance={
            **provenance.collect(
                params=snakemake.params.config,
                seeds_paths=[Path(p) for p in snakemake.input.seeds],
                generated_paths=[Path(p) for p in snakemake.input.generated],
                mix_stats=Path(snakemake.input.mix_stats),
                base_dir=Path(snakemake.input.base),
                taxonomy_root=snakemake.params.taxonomy,
                project_root=Path.cwd(),
            ),
            **merge.training_provenance(merged),
        },
    )
