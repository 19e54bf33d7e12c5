from pathlib import Path

from labmake.core import logs, paths
from labmake.core.config import PhaseConfig, section
from labmake.training import launch, train

with logs.stage(snakemake.log[0], "train", snakemake.threads):
    phase = section(PhaseConfig, snakemake.params.phase, "train.phases")
    kwargs = dict(
        max_seq_len=snakemake.params.max_seq_len,
        seed=snakemake.params.seed,
        base_dir=Path(snakemake.input.base),
        parent_dirs=[Path(p) for p in snakemake.input.parents],
        dataset=Path(snakemake.input.dataset),
        replay=[Path(p) for p in snakemake.input.replay],
        out_dir=Path(snakemake.output[0]),
        packing=snakemake.params.packing,
        over_length=snakemake.params.over_length,
        resume_dir=Path(paths.RESUME_DIR.format(phase=snakemake.wildcards.phase)),
        evaluation_items=Path(snakemake.input.evaluation) if snakemake.input.evaluation else None,
    )
    processes = launch.resolve_processes(snakemake.params.processes)
    if processes > 1 and not launch.in_launch():
        launch.launch(
            processes, phase, kwargs, log_file=snakemake.log[0], threads=snakemake.threads
        )
    else:
        train.run_phase(phase, **kwargs)
