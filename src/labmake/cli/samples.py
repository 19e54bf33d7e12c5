"""A leaf's generated samples as a person reads them: kept or rejected, and by what.

What ``labmake data show`` prints and ``labmake try`` counts. Two stages decide a sample's fate:
the generate stage's pipeline (its record says ``rejected_by``: the block, and ``reason``) and
the filter stage's rules, which write only what they accept. For a sample the pipeline kept but
the filters did not, the filter's reason is found the way the stage found it: the filter
stage's own acceptor, with the build's filter settings, over the same records in the same order.

The funnel of a leaf: samples the teacher was asked for (``requests``, one per sample the
pipeline started), those whose text parsed into a sample (``parsed``), those the pipeline's
judges, value filters and deduplication kept (``judged``), and those the filters accepted
(``kept``, the training data).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labmake.core import artifacts, paths

KEPT, REJECTED = "kept", "rejected"
PIPELINE, FILTERS = "pipeline", "filters"
# Block types whose rejections mean the teacher's text never became a sample.
_UNPARSED_TYPES = frozenset({"rows", "generate", "parse"})
# Record fields shown as they are when present (the teacher's raw text, the safety layers').
EXTRA_FIELDS = ("raw", "safety", "verdicts", "chunk_index", "chunk_source")


class SamplesError(ValueError):
    """The leaf's samples cannot be read; the message says which file and what to run."""


@dataclass(frozen=True)
class Sample:
    id: str
    status: str  # kept | rejected
    stage: str  # pipeline | filters: what decided (for a kept sample, the last stage that ran)
    by: str  # the block or the filter rule that rejected it; "" when kept
    reason: str
    question: str
    answer: str
    context: str
    scores: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class LeafSamples:
    leaf: str
    samples: list[Sample]
    stats: dict[str, Any]
    funnel: dict[str, int]
    notes: list[str] = field(default_factory=list)


def artifact(build_root: Path, template_path: str) -> Path:
    """An artifact's path under ``build_root`` (a build's ``build/`` folder)."""
    return Path(build_root) / PurePosixPath(template_path).relative_to(paths.BUILD)


def load_leaf_samples(build_root: Path, leaf: str, filter_cfg: Any | None) -> LeafSamples:
    """Every generated sample of ``leaf`` in the build under ``build_root``, with its fate.

    ``filter_cfg``: the build's filter settings (a FilterConfig); None leaves filter-stage
    rejections without their rule.
    """
    generated_path = artifact(build_root, paths.generated(leaf))
    if not generated_path.is_file():
        raise SamplesError(
            f"{generated_path}: no generated samples for {leaf}; build them first "
            f"(labmake try {leaf}, or labmake build)"
        )
    records = artifacts.read_jsonl(generated_path)
    stats_path = artifact(build_root, paths.filter_stats(leaf))
    stats = artifacts.read_json(stats_path) if stats_path.is_file() else {}
    accepted = _accepted_ids(build_root, leaf)
    notes: list[str] = []
    reasons = _filter_reasons(build_root, leaf, records, filter_cfg, accepted, notes)
    notes += _rewrite_notes(build_root, leaf)
    samples = [_sample(r, accepted, reasons) for r in records]
    return LeafSamples(leaf, samples, stats, funnel(records, stats, accepted), notes)


def _rewrite_notes(build_root: Path, leaf: str) -> list[str]:
    """What the leaf's chunk rewrites (generate.knowledge.augment) came to, when it had any."""
    path = artifact(build_root, paths.augmented(leaf))
    rewrites = artifacts.read_jsonl(path) if path.is_file() else []
    if not rewrites:
        return []
    rejected = Counter(
        f"{r.get('rejected_by')} ({r.get('reason')})" for r in rewrites if r.get("status") != KEPT
    )
    kept = len(rewrites) - sum(rejected.values())
    why = "; rejected: " + ", ".join(f"{n} by {k}" for k, n in sorted(rejected.items()))
    return [
        f"{kept} of {len(rewrites)} chunk rewrites were kept as extra chunks (their samples "
        f"show chunk_source){why if rejected else ''}; every rewrite, with the teacher's text "
        f"and why, is in {path}"
    ]


def _accepted_ids(build_root: Path, leaf: str) -> set[str] | None:
    """Ids of the samples the filter stage accepted, or None when it has not run."""
    path = artifact(build_root, paths.filtered(leaf))
    if not path.is_file():
        return None
    return {str(r.get("id")) for r in artifacts.read_jsonl(path)}


def _filter_reasons(
    build_root: Path,
    leaf: str,
    records: list[dict[str, Any]],
    filter_cfg: Any | None,
    accepted: set[str] | None,
    notes: list[str],
) -> dict[str, str]:
    """Sample id -> the filter rule that rejected it, replaying the filter stage's acceptor."""
    if filter_cfg is None or accepted is None:
        return {}
    from labmake.sdg.accept import Acceptor

    seeds_path = artifact(build_root, paths.seeds(leaf))
    if not seeds_path.is_file():
        return {}
    acceptor = Acceptor(artifacts.read_json(seeds_path), filter_cfg)
    reasons: dict[str, str] = {}
    replay_accepts = set()
    for record in records:
        if record.get("status") != KEPT:
            continue
        reason = acceptor.reason(record)
        if reason:
            reasons[str(record.get("id"))] = reason
        else:
            replay_accepts.add(str(record.get("id")))
    if replay_accepts != accepted:
        notes.append(
            "the filter settings in params.yaml are not the ones this build's filter stage ran "
            "with: the filter reasons shown are what today's settings say"
        )
    return reasons


def _sample(record: dict[str, Any], accepted: set[str] | None, reasons: dict[str, str]) -> Sample:
    sid = str(record.get("id"))
    if record.get("status") != KEPT:
        status, stage = REJECTED, PIPELINE
        by, reason = str(record.get("rejected_by") or "?"), str(record.get("reason") or "")
    elif accepted is None:  # the filter stage has not run yet: the pipeline's word is all
        status, stage, by, reason = KEPT, PIPELINE, "", ""
    elif sid in accepted:
        status, stage, by, reason = KEPT, FILTERS, "", ""
    else:
        status, stage = REJECTED, FILTERS
        by = reasons.get(sid, "filter")
        reason = "" if sid in reasons else "rejected by the filter stage"
    extras = {k: record[k] for k in EXTRA_FIELDS if record.get(k) not in (None, {}, [], "")}
    return Sample(
        id=sid,
        status=status,
        stage=stage,
        by=by,
        reason=reason,
        question=str(record.get("question") or ""),
        answer=str(record.get("answer") or ""),
        context=str(record.get("context") or ""),
        scores=dict(record.get("scores") or {}),
        extras=extras,
    )


def _block_types(records: list[dict[str, Any]]) -> dict[str, str]:
    """Block name -> type, for the pipelines the records name (shipped ones; {} if unknown)."""
    from labmake.sdg import PipelineError, load

    types: dict[str, str] = {}
    for name in sorted({str(r.get("pipeline")) for r in records if r.get("pipeline")}):
        try:
            types.update({b.name: b.type for b in load(name).blocks})
        except (PipelineError, OSError):
            continue  # a pipeline of the build's own pipelines_dir: names tell then
    return types


def _unparsed(block: str, types: dict[str, str]) -> bool:
    kind = types.get(block)
    if kind is not None:
        return kind in _UNPARSED_TYPES
    return block.startswith(("generate", "parse"))


def funnel(
    records: list[dict[str, Any]], stats: dict[str, Any], accepted: set[str] | None = None
) -> dict[str, int]:
    """requests -> parsed -> judged -> kept for one leaf's records (see the module's text)."""
    types = _block_types(records)
    by_block = Counter(str(r.get("rejected_by")) for r in records if r.get("status") != KEPT)
    unparsed = sum(n for block, n in by_block.items() if _unparsed(block, types))
    judged = sum(r.get("status") == KEPT for r in records)
    kept = stats.get("kept", len(accepted) if accepted is not None else judged)
    return {
        "requests": len(records),
        "parsed": len(records) - unparsed,
        "judged": judged,
        "kept": int(kept),
    }


def select(
    samples: list[Sample],
    *,
    status: str | None = None,
    block: str | None = None,
    limit: int | None = None,
) -> list[Sample]:
    """The samples ``data show`` lists: of one status, rejected by one block or rule, at most
    ``limit`` of them (None: all)."""
    chosen = [
        s
        for s in samples
        if (status is None or s.status == status) and (block is None or s.by == block)
    ]
    return chosen if limit is None else chosen[:limit]


def rejection_counts(samples: list[Sample]) -> list[tuple[str, str, int]]:
    """(stage, block or rule, samples) for every rejection, in a stable order."""
    counts = Counter((s.stage, s.by) for s in samples if s.status == REJECTED)
    order = {PIPELINE: 0, FILTERS: 1}
    return sorted(
        ((stage, by, n) for (stage, by), n in counts.items()),
        key=lambda t: (order.get(t[0], 2), -t[2], t[1]),
    )
