"""rules/mix.smk: every leaf's accepted samples -> the training sets and the held-out items."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import MixConfig, NearDuplicateConfig
from labmake.stages import Job, typed


def mix(job: Job) -> None:
    """build/data/{knowledge,skills,eval}.jsonl and build/data/mix.json."""
    from labmake.sdg import mix as mixing

    with logs.stage(job.log[0], "mix"):
        mixing.run(
            [Path(p) for p in job.input.seeds],
            [Path(p) for p in job.input.filtered],
            typed(MixConfig, job, "mix"),
            job.params.seed,
            {name: Path(job.output[name]) for name in ("knowledge", "skills", "eval")},
            Path(job.output.stats),
            typed(NearDuplicateConfig, job, "near_duplicate", "filter.near_duplicate"),
        )
