"""rules/filter.smk: a leaf's generated samples -> the accepted ones, and what removed the rest."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import FilterConfig
from labmake.stages import Job, typed


def filter(job: Job) -> None:  # named after its rule (it shadows the builtin here only)
    """build/filtered/{leaf}.jsonl and {leaf}.stats.json."""
    from labmake.sdg import filters

    with logs.stage(job.log[0], "filter"):
        filters.run(
            Path(job.input.seeds),
            Path(job.input.generated),
            typed(FilterConfig, job, "filter"),
            Path(job.output.samples),
            Path(job.output.stats),
        )
