"""Stage 3 (per leaf): the pipeline's kept samples -> accepted samples as chat ``messages``.

The generate stage's pipeline already parsed, judged and exact-deduplicated; rule-based checks
here do what a weak judge cannot be trusted to, and are cheap to change (a filter edit re-asks
the teacher only when a leaf then needs another round of generation: the generate stage counts
its accepted samples with these same rules): empty, over/under-long, an answer that repeats its question, blocklisted
patterns (boilerplate, refusals, links), knowledge answers whose content is not in their chunk,
exact duplicates, near-duplicates of a seed or of a kept sample (ROUGE-L or MinHash), and the
per-leaf cap (:mod:`labmake.sdg.accept`). ``{leaf}.stats.json`` counts what each pipeline block
and each filter removed.

A hard leaf degrades, it does not sink the build: a leaf left with fewer than
``filter.flag_below`` accepted samples is flagged (a warning in the log, ``flagged`` and the
hint in its stats, which the report shows on top), and one left with none writes an empty
file, so the build goes on with the other leaves (the leaf's seeds are still trained on and
held out). ``filter.on_empty: fail`` stops the build at an empty leaf instead, for a taxonomy
repository's CI.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import FilterConfig
from labmake.sdg.accept import Acceptor
from labmake.sdg.safety_stats import safety_stats

log = logging.getLogger(__name__)


class EmptyLeafError(RuntimeError):
    """The filters kept nothing for a leaf and ``filter.on_empty`` is ``fail``."""


def to_messages(question: str, answer: str, context: str | None) -> list[dict[str, str]]:
    user = f"{context}\n\n{question}" if context else question
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


_PROVENANCE = (
    "id",
    "pipeline",
    "pipeline_version",
    "teacher",
    "seeds",
    "templates",
    "scores",
    "safety",
)


def _sample(seeds: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    knowledge = seeds["kind"] == "knowledge"
    question, answer = record.get("question") or "", record.get("answer") or ""
    context = None if knowledge else record.get("context")
    sample = {"leaf": seeds["leaf"], "kind": seeds["kind"], "source": "generated"}
    sample.update({k: record.get(k) for k in _PROVENANCE})
    sample.update(question=question, answer=answer, context=context)
    if knowledge:
        sample.update(chunk=record.get("chunk"), chunk_index=record.get("chunk_index"))
        if record.get("chunk_source") is not None:  # written from a rewrite of that chunk
            sample["chunk_source"] = record["chunk_source"]
    sample["messages"] = to_messages(question, answer, context)
    return sample


def filter_leaf(
    seeds: dict[str, Any], generated: list[dict[str, Any]], cfg: FilterConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    acceptor = Acceptor(seeds, cfg)
    by_block: Counter[str] = Counter(r["rejected_by"] for r in generated if r["status"] != "kept")
    rejected: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []
    candidates = [r for r in generated if r["status"] == "kept"]
    for record in candidates:
        reason = acceptor.reason(record)
        if reason:
            rejected[reason] += 1
        else:
            kept.append(_sample(seeds, record))
    pipelines = sorted({(r["pipeline"], r["pipeline_version"]) for r in generated})
    stats = {
        "leaf": seeds["leaf"],
        "pipeline": [f"{name} v{version}" for name, version in pipelines],
        "generated": len(generated),
        "removed_by_pipeline": {block: n for block, n in sorted(by_block.items())},
        "candidates": len(candidates),
        "kept": len(kept),
        "removed": {reason: n for reason, n in sorted(rejected.items()) if n},
        # Per safety layer (detectors, judge) and category: what the pipeline's safety blocks
        # removed, and the policy they applied.
        "safety": safety_stats(generated),
        # Each checked judge's verdict on the leaf's seeds: a judge that failed it (used: false)
        # judged none of the leaf's samples (labmake.sdg.judge_check).
        "judge_checks": judge_checks(generated),
    }
    return kept, stats


def judge_checks(generated: list[dict[str, Any]]) -> dict[str, Any]:
    """Block name -> its seed check, from the records that met a checked judge."""
    out: dict[str, Any] = {}
    for record in generated:
        out.update(record.get("judge_checks") or {})
    return dict(sorted(out.items()))


def low_yield(stats: dict[str, Any], cfg: FilterConfig, where: str) -> str:
    """What a flagged leaf's log line, report.json and report.html say: counts and the hint."""
    return (
        f"{stats['leaf']}: the filters kept {stats['kept']} of {stats['candidates']} samples the "
        f"pipeline kept (a leaf is flagged below filter.flag_below: {cfg.flag_below}; "
        f"{stats['generated']} generated; removed by the pipeline: "
        f"{stats['removed_by_pipeline']}; by the filters: {stats['removed']}); see {where} and "
        "the rejected samples, with the teacher's text, in build/generated/. Hints: the teacher "
        "may be too weak for this leaf (set teacher.gguf to a stronger model), raise the "
        "pipeline's min_kept and max_requests in params.yaml's generate section so that more "
        "rounds run, try generate.pipeline: simple, or relax the thresholds in the filter "
        "section."
    )


def run(
    seeds_path: Path, generated_path: Path, cfg: FilterConfig, out: Path, stats_out: Path
) -> None:
    seeds = artifacts.read_json(seeds_path)
    kept, stats = filter_leaf(seeds, artifacts.read_jsonl(generated_path), cfg)
    stats["flagged"] = not kept or len(kept) < cfg.flag_below
    if stats["flagged"]:
        stats["hint"] = low_yield(stats, cfg, str(stats_out))
    artifacts.write_json(stats_out, stats)
    if not kept and cfg.on_empty == "fail":
        raise EmptyLeafError(
            stats["hint"]
            + " filter.on_empty: fail stops the build here; warn builds on without this leaf's "
            "generated data."
        )
    if stats["flagged"]:
        log.warning("%s", stats["hint"])
    artifacts.write_jsonl(out, kept)
