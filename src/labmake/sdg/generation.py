"""Stage 2 (per leaf): seeds -> build/generated/{leaf}.jsonl, the output of the leaf's pipeline.

The pipeline (``labmake.sdg``: YAML blocks, by leaf kind unless ``generate.pipeline`` names
one) is checked before the teacher starts. Every request's seed is derived from (global seed,
leaf, block, row id), so a leaf's output depends on nothing outside the leaf and the same
inputs give the same bytes. Each block sends its whole list of requests at once, so a batching
teacher can decode them together.

A pipeline with ``rounds`` runs until the leaf has its ``min_kept`` accepted samples or would
pass ``max_requests`` (:mod:`labmake.sdg.rounds`); acceptance is the filter stage's own rules, so
the generate rule reads params.yaml's filter section too.

One record per sample, kept or rejected (``status``, ``rejected_by``: the block that dropped
it, ``reason``: why), with provenance: pipeline name and version, round, teacher, each block's
seed and template sha256, judge scores, the seed check of each checked judge it met
(``judge_checks``: :mod:`labmake.sdg.judge_check`); a rejected record keeps what the teacher wrote
(``raw``: per generate block, the text after the prompt's open tag). The filter stage applies
the rule-based checks and counts everything.

With ``generate.knowledge.augment`` on, a knowledge leaf's chunks are first rewritten
(:mod:`labmake.sdg.augment`, once per leaf: rounds reuse the rewrites); the rewrites' records,
of the same shape, go to ``build/generated/{leaf}.augmented.jsonl``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from labmake.core import artifacts, paths
from labmake.core.config import FilterConfig, GenerateConfig, TeacherConfig
from labmake.sdg import Context, Pipeline, augment, check, load, pipeline_for
from labmake.sdg import run as run_pipeline
from labmake.sdg.accept import Acceptor
from labmake.sdg.blocks.base import Counts, Row
from labmake.sdg.pipeline import Result, floor
from labmake.sdg.rounds import bound, run_rounds
from labmake.taxonomy.limits import estimate_tokens
from labmake.teacher.cache import RequestCache
from labmake.teacher.complete import complete_all, usage_logged
from labmake.teacher.protocol import Completion, Request, Teacher
from labmake.teacher.shared import open_for_job

log = logging.getLogger(__name__)


def pipeline_of(seeds: dict[str, Any], gen: GenerateConfig) -> Pipeline:
    """The leaf's pipeline, loaded and checked (PipelineError names the file and the fix)."""
    pipeline = load(pipeline_for(seeds, gen), gen.pipelines_dir)
    check(pipeline, gen)
    return pipeline


def record(
    seeds: dict[str, Any],
    pipeline: Pipeline,
    row: Row,
    teacher: str,
    kept: bool,
    round_index: int | None = None,
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
        # The safety layers' findings and the policy (name, version, sha256) they applied;
        # None for a row that never reached a safety block.
        "safety": row.get("_safety"),
    }
    if round_index is not None:
        out["round"] = round_index
    if row.get("_judge_checks"):  # checked judges this sample met: their seed check, used?
        out["judge_checks"] = row["_judge_checks"]
    if row.get("_chunk_source") is not None:  # a sample written from a chunk's rewrite
        out["chunk_source"] = row["_chunk_source"]
    for column in pipeline.outputs:
        out[column] = row.get(column)
    if not kept:
        out["raw"] = row.get("_raw", {})
    return out


def _completer(teacher: Teacher, cache: RequestCache | None) -> Any:
    def complete(requests: list[Request], label: str) -> list[Completion]:
        return complete_all(teacher, requests, label, cache=cache)

    return complete


@contextmanager
def cached_teacher(teacher_cfg: TeacherConfig) -> Iterator[tuple[Teacher, RequestCache]]:
    """The configured teacher and the build's request cache; the teacher is closed after."""
    with usage_logged("generate"):
        teacher = open_for_job(teacher_cfg)
        try:
            # The request cache: a re-run (after a crash, or an edit elsewhere) re-asks nothing.
            yield teacher, RequestCache(Path(paths.teacher_cache()))
        finally:
            teacher.close()


def _context(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    *,
    count_tokens: Callable[[str], int],
    n_ctx: int,
    complete: Any = None,
    **more: Any,
) -> Context:
    """A pipeline run's context; ``more``: Context's own keys (dry, counts, window, seen)."""

    def fits(prompt: str, max_tokens: int) -> bool:
        return count_tokens(prompt) + max_tokens <= n_ctx

    return Context(
        seeds=seeds,
        gen=gen,
        seed=seed,
        max_tokens=teacher_cfg.max_tokens,
        complete=complete or (lambda requests, label: []),
        fits=fits,
        override_dir=gen.pipelines_dir,
        count_tokens=count_tokens,
        n_ctx=n_ctx,
        **more,
    )


def _teacher_context(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None,
    **more: Any,
) -> Context:
    """A leaf's context whose requests go to ``teacher`` (through ``cache``), sized by its
    tokenizer and context window."""
    return _context(
        seeds,
        gen,
        teacher_cfg,
        seed,
        count_tokens=teacher.count_tokens,
        n_ctx=teacher.n_ctx,
        complete=_completer(teacher, cache),
        **more,
    )


def _log_flow(leaf: str, result: Result, round_index: int = 0) -> None:
    where = f"{leaf}: round {round_index}" if round_index else leaf
    for step in result.flow:
        log.info(
            "%s: %s: %d in, %d kept, %d rejected",
            where,
            step["block"],
            step["in"],
            step["kept"],
            step["rejected"],
        )


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
    """Run ``pipeline`` once on one leaf with ``teacher`` and log each block's funnel.

    ``counts``: the params section the pipeline's count names resolve against (default:
    ``generate``).
    """
    ctx = _teacher_context(seeds, gen, teacher_cfg, seed, teacher, cache, counts=counts)
    result = run_pipeline(pipeline, ctx)
    _log_flow(seeds["leaf"], result)
    return result


def generate_leaf(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None = None,
    accept: FilterConfig | None = None,
) -> list[dict[str, Any]]:
    """Run the leaf's pipeline with ``teacher``, in rounds when it has a yield floor (counted by
    the ``accept`` filters; without them, by what the pipeline keeps): one record per sample,
    kept ones first, each group in round order. ``seeds`` with rewrites (:func:`augment_leaf`)
    give rows on the rewritten chunks too."""
    pipeline = pipeline_of(seeds, gen)
    seen: dict[str, set[tuple[str, ...]]] = {}  # dedup blocks remember across rounds
    judge_checks: dict[str, Any] = {}  # and checked judges their check (asked once per leaf)
    acceptor = Acceptor(seeds, accept) if accept is not None else None

    def make_ctx(window: tuple[int, int] | None, dry: bool) -> Context:
        return _teacher_context(
            seeds,
            gen,
            teacher_cfg,
            seed,
            teacher,
            cache,
            dry=dry,
            window=window,
            seen={} if dry else seen,
            acceptor=acceptor,
            judge_checks=judge_checks,
        )

    rounds = run_rounds(pipeline, make_ctx, floor(pipeline, ("generate", gen)), acceptor)
    for r in rounds:
        _log_flow(seeds["leaf"], r.result, r.index)
        log.info(
            "%s: round %d (samples %d-%d): %d teacher requests; %d accepted so far",
            seeds["leaf"],
            r.index,
            r.window[0],
            r.window[0] + r.window[1] - 1,
            r.requests,
            r.accepted,
        )
    identity = teacher.identity
    kept = [
        record(seeds, pipeline, row, identity, True, r.index)
        for r in rounds
        for row in r.result.kept
    ]
    return kept + [
        record(seeds, pipeline, row, identity, False, r.index)
        for r in rounds
        for row in r.result.rejected
    ]


def augment_leaf(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(``seeds`` with the rewrites of its chunks that the augment pipeline kept, one record per
    rewrite: kept ones first); ``(seeds, [])`` when the leaf is not augmented."""
    if not augment.enabled(seeds, gen, pipeline_of(seeds, gen)):
        return seeds, []
    pipeline = augment.pipeline(gen)
    result = run_with_teacher(pipeline, seeds, gen, teacher_cfg, seed, teacher, cache)
    identity = teacher.identity
    records = [record(seeds, pipeline, row, identity, True) for row in result.kept]
    records += [record(seeds, pipeline, row, identity, False) for row in result.rejected]
    return augment.with_rewrites(seeds, result.kept), records


def _dry_run(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    pipeline: Pipeline,
    counts: Counts | None = None,
) -> tuple[Result, list[Request]]:
    """A dry run of ``pipeline``: (what it keeps, the requests it sends), every judge passing."""
    ctx = _context(
        seeds,
        gen,
        teacher_cfg,
        seed,
        count_tokens=estimate_tokens,
        n_ctx=teacher_cfg.n_ctx,
        dry=True,
        counts=counts,
    )
    return run_pipeline(pipeline, ctx), ctx.log


def estimate(
    seeds: dict[str, Any],
    gen: GenerateConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    pipeline: Pipeline | None = None,
    counts: Counts | None = None,
) -> list[Request]:
    """The requests a pipeline's (default: the leaf's) first round sends at most (every row
    passing every judge).

    A dry run of the real pipeline, tokens estimated without a tokenizer: the first teacher
    blocks' prompts are the real ones (examples dropped where they would overflow n_ctx, as a
    run drops them); later prompts carry the leaf's longest seed value where the teacher's text
    would be, and budgets come from the leaf's seeds as in a run.
    """
    return _dry_run(seeds, gen, teacher_cfg, seed, pipeline or pipeline_of(seeds, gen), counts)[1]


class RequestBound(NamedTuple):
    first: list[Request]  # the first round's requests at most (a leaf's chunk rewrites first)
    most: int  # the most requests the leaf may send in all rounds
    rewrites: int  # of ``first``: chunk rewrite requests (generate.knowledge.augment)
    on_rewrites: int  # of ``first``: Q/A pipeline requests on rewritten chunks, all kept


def request_bound(
    seeds: dict[str, Any], gen: GenerateConfig, teacher_cfg: TeacherConfig, seed: int
) -> RequestBound:
    """What a leaf may cost: its chunk rewrites, if augmented, every one kept; then its
    pipeline's first round and the rounds its yield floor allows (which rewrites do not count
    against)."""
    pipeline = pipeline_of(seeds, gen)
    first = estimate(seeds, gen, teacher_cfg, seed, pipeline)
    rewrites: list[Request] = []
    on_rewrites = 0
    if augment.enabled(seeds, gen, pipeline):
        result, rewrites = _dry_run(seeds, gen, teacher_cfg, seed, augment.pipeline(gen))
        augmented = augment.with_rewrites(seeds, result.kept)
        with_rewrites = estimate(augmented, gen, teacher_cfg, seed, pipeline)
        on_rewrites, first = len(with_rewrites) - len(first), with_rewrites
    most = len(rewrites) + bound(len(first), floor(pipeline, ("generate", gen)))
    return RequestBound(rewrites + first, most, len(rewrites), on_rewrites)


def run(
    seeds_path: Path,
    out: Path,
    teacher_cfg: TeacherConfig,
    gen: GenerateConfig,
    seed: int,
    accept: FilterConfig | None = None,
    rewrites_out: Path | None = None,
) -> None:
    """``out``: the leaf's sample records; ``rewrites_out``: its chunk rewrites' (none: [])."""
    seeds = artifacts.read_json(seeds_path)
    # A broken pipeline fails before the teacher loads.
    if augment.enabled(seeds, gen, pipeline_of(seeds, gen)):
        augment.pipeline(gen)
    with cached_teacher(teacher_cfg) as (teacher, cache):
        augmented, rewrites = augment_leaf(seeds, gen, teacher_cfg, seed, teacher, cache)
        records = generate_leaf(augmented, gen, teacher_cfg, seed, teacher, cache, accept)
    kept = sum(r["status"] == "kept" for r in records)
    log.info(
        "%s: %d samples kept by the pipeline, %d rejected", seeds["leaf"], kept, len(records) - kept
    )
    if rewrites:
        used = len(augmented.get("augmented", []))
        log.info("%s: %d of %d chunk rewrites kept as chunks", seeds["leaf"], used, len(rewrites))
    artifacts.write_jsonl(out, records)
    if rewrites_out is not None:
        artifacts.write_jsonl(rewrites_out, rewrites)
