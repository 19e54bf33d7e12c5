"""rules/generate.smk: a leaf's seeds -> the teacher's samples, kept and rejected."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import FilterConfig, GenerateConfig, TeacherConfig
from labmake.stages import Job, typed


def generate(job: Job) -> None:
    """build/generated/{leaf}.jsonl: every sample the leaf's pipeline made, with provenance;
    {leaf}.augmented.jsonl: every rewrite of its chunks (generate.knowledge.augment)."""
    from labmake.sdg import generation

    with logs.stage(job.log[0], "generate", job.threads):
        generation.run(
            Path(job.input.seeds),
            Path(job.output.generated),
            typed(TeacherConfig, job, "teacher"),
            typed(GenerateConfig, job, "generate"),
            job.params.seed,
            typed(FilterConfig, job, "filter"),
            Path(job.output.augmented),
        )
