from pathlib import Path

from labmake import logs, train
from labmake.config import PhaseConfig, section

with logs.stage(snakemake.log[0], "train", snakemake.threads):
    train.run_phase(
        section(PhaseConfig, snakemake.params.phase, "train.phases"),
        max_seq_len=snakemake.params.max_seq_len,
        seed=snakemake.params.seed,
        base_dir=Path(snakemake.input.base),
        parent_dirs=[Path(p) for p in snakemake.input.parents],
        dataset=Path(snakemake.input.dataset),
        replay=[Path(p) for p in snakemake.input.replay],
        out_dir=Path(snakemake.output[0]),
    )
