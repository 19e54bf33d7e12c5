"""Stage 2 (per leaf): seeds -> build/generated/{leaf}.jsonl, the output of the leaf's pipeline.

The pipeline (``labmake.sdg``: YAML blocks, by leaf kind unless ``generate.pipeline`` names
one) is checked before the teacher starts. Every request's seed is derived from (global seed,
leaf, block, row id), so a leaf's output depends on nothing outside the leaf and the same
inputs give the same bytes. Each block sends its whole list of requests at once, so a batching
teacher can decode them together.

One record per sample, kept or rejected (``status``, ``rejected_by``: the block that dropped
it), with provenance: pipeline name and version, teacher, each block's seed and template
sha256, judge scores. The filter stage applies the rule-based checks and counts everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from labmake.core import artifacts, paths
from labmake.core.config import GenerateConfig, TeacherConfig
from labmake.sdg import Context, Pipeline, check, load, pipeline_for
from labmake.sdg import run as run_pipeline
from labmake.sdg.blocks.base import Counts, Row
from labmake.sdg.pipeline import Result
from labmake.teacher.cache import RequestCache
from labmake.teacher.complete import complete_all
from labmake.teacher.protocol import Completion, Request, Teacher
from labmake.teacher.registry import open_teacher

log = logging.getLogger(__name__)


def pipeline_of(seeds: dict[str, Any], gen: GenerateConfig) -> Pipeline:
    """The leaf's pipeline, loaded and checked (PipelineError names the file and the fix)."""
    pipeline = load(pipeline_for(seeds, gen), gen.pipelines_dir)
    check(pipeline, gen)
    return pipeline


def record(
    seeds: dict[str, Any], pipeline: Pipeline, row: Row, teacher: str, kept: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "leaf": seeds["leaf"],
        "kind": seeds["kind"],
        "id": row["_id"],
        "status": "kept" if kept else "rejected",
        "rejected_by": None if kept else row["_rejected_by"],
        "reason": None if kept else row["_reason"],
        "pipeline": pipeline.name,
        "pipeline_version": pipeline.version,
        "teacher": teacher,
        "seeds": row["_seeds"],
        "templates": row["_templates"],
        "scores": row["_scores"],
        "verdicts": row.get("_verdicts", {}),
    }
    for column in pipeline.outputs:
        out[column] = row.get(column)
    return out


def _completer(teacher: Teacher, cache: RequestCache | None) -> Any:
    def complete(requests: list[Request], label: str) -> list[Completion]:
        return complete_all(teacher, requests, label, cache=cache)

    return complete


@contextmanager
def cached_teacher(teacher_cfg: TeacherConfig) -> Iterator[tuple[Teacher, RequestCache]]:
    """The configured teacher and the build's request cache; the teacher is closed after."""
    teacher = open_teacher(teacher_cfg)
    try:
        # The request cache: a re-run (after a crash, or an edit elsewhere) re-asks nothing.
        yield teacher, RequestCache(Path(paths.TEACHER_CACHE))
    finally:
        teacher.close()


def run_with_teacher(
    pipeline: Pipeline,
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None = None,
    counts: Counts | None = None,
) -> Result:
    """Run ``pipeline`` on one leaf with ``teacher`` and log each block's funnel.

    ``counts``: the params section the pipeline's count names resolve against (default:
    ``generate``).
    """

    def fits(prompt: str, max_tokens: int) -> bool:
        return teacher.count_tokens(prompt) + max_tokens <= teacher.n_ctx

    ctx = Context(
        seeds=seeds,
        gen=gen,
        seed=seed,
        max_tokens=teacher_cfg.max_tokens,
        complete=_completer(teacher, cache),
        fits=fits,
        override_dir=gen.pipelines_dir,
        counts=counts,
    )
    result = run_pipeline(pipeline, ctx)
    for step in result.flow:
        log.info(
            "%s: %s: %d in, %d kept, %d rejected",
            seeds["leaf"],
            step["block"],
            step["in"],
            step["kept"],
            step["rejected"],
        )
    return result


def generate_leaf(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None = None,
) -> list[dict[str, Any]]:
    """Run the leaf's pipeline with ``teacher``: one record per sample, kept ones first."""
    pipeline = pipeline_of(seeds, gen)
    result = run_with_teacher(pipeline, seeds, gen, teacher_cfg, seed, teacher, cache)
    identity = teacher.identity
    return [record(seeds, pipeline, r, identity, True) for r in result.kept] + [
        record(seeds, pipeline, r, identity, False) for r in result.rejected
    ]


def estimate(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    pipeline: Pipeline | None = None,
    counts: Counts | None = None,
) -> list[Request]:
    """The requests a pipeline (default: the leaf's) sends at most (every row passing every
    judge).

    A dry run of the real pipeline: the first teacher blocks' prompts are the real ones; later
    prompts carry a seed example's text where the teacher's would be.
    """
    pipeline = pipeline or pipeline_of(seeds, gen)
    ctx = Context(
        seeds=seeds,
        gen=gen,
        seed=seed,
        max_tokens=teacher_cfg.max_tokens,
        complete=lambda requests, label: [],
        fits=lambda prompt, max_tokens: True,
        override_dir=gen.pipelines_dir,
        dry=True,
        counts=counts,
    )
    run_pipeline(pipeline, ctx)
    return ctx.log


def run(
    seeds_path: Path, out: Path, teacher_cfg: TeacherConfig, gen: GenerateConfig, seed: int
) -> None:
    seeds = artifacts.read_json(seeds_path)
    pipeline_of(seeds, gen)  # a broken pipeline fails before the teacher loads
    with cached_teacher(teacher_cfg) as (teacher, cache):
        records = generate_leaf(seeds, gen, teacher_cfg, seed, teacher, cache)
    kept = sum(r["status"] == "kept" for r in records)
    log.info(
        "%s: %d samples kept by the pipeline, %d rejected", seeds["leaf"], kept, len(records) - kept
    )
    artifacts.write_jsonl(out, records)
