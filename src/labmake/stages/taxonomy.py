"""rules/taxonomy.smk: a leaf's qna.yaml and documents -> its validated seeds."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import SeedsConfig, StudentConfig, TaxonomyConfig, TeacherConfig, section
from labmake.stages import Job, typed


def seeds(job: Job) -> None:
    """build/seeds/{leaf}.json: normalized seed examples; knowledge documents cut into chunks by
    the tokenizer of the teacher (or of the student, for a teacher behind an HTTP API)."""
    from labmake.taxonomy import seeds as leaf_seeds
    from labmake.taxonomy.document_sources import DocumentSources

    with logs.stage(job.log[0], "seeds"):
        tokenizer = job.params.tokenizer
        leaf_seeds.run(
            Path(job.params.root),
            job.wildcards.leaf,
            typed(SeedsConfig, job, "seeds"),
            section(TeacherConfig, tokenizer["teacher"], "teacher"),
            section(StudentConfig, tokenizer["student"], "student"),
            Path(job.output[0]),
            # Relative folders in the allowlist are read from the build's folder, as here.
            DocumentSources(typed(TaxonomyConfig, job, "sources", "taxonomy").document_sources),
        )
