"""What report.html shows besides the scores, read from the build's own artifacts: the GGUF's
provenance, the leaves, each leaf's synthetic-data funnel, the dataset sizes, every phase's
training loss and kept checkpoint, and how long each stage took."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.evaluation.provenance import git_commit

# Stage order on the page; rules not listed follow in name order.
STAGES = (
    "seeds",
    "generate",
    "filter",
    "mix",
    "base_model",
    "train",
    "merge",
    "gguf",
    "quantize",
    "evaluate",
    "report",
    "manifest",
)
# Filter reasons in pipeline order (the filter stage applies its checks in this order); a
# reason not listed (a newer filter) follows in name order.
FILTER_ORDER = (
    "malformed",
    "cut_off",
    "empty",
    "question_length",
    "answer_length",
    "answer_repeats_question",
    "blocklisted",
    "not_grounded_in_chunk",
    "exact_duplicate",
    "copies_a_seed",
    "near_duplicate",
    "over_max_samples_per_leaf",
)


@dataclass
class BuildFacts:
    """What the HTML shows besides the evaluation: read from the build's own artifacts."""

    provenance: dict[str, Any] = field(default_factory=dict)
    code_commit: str = "unknown"
    params: dict[str, Any] = field(default_factory=dict)
    leaves: list[dict[str, Any]] = field(default_factory=list)
    funnels: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, int] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    # per phase: scores at checkpoints ({"step", "heldout_loss"[, "evaluation_nll"]}), the kept
    # step and what chose it
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: list[dict[str, Any]] = field(default_factory=list)


def code_commit() -> str:
    """The last commit of labmake's own source (``unknown`` outside a git checkout)."""
    return git_commit(Path(__file__).resolve().parent)


def funnel(stats: dict[str, Any]) -> dict[str, Any]:
    """A leaf's filter stats as a funnel: what the teacher wrote, each filter's removals, kept.

    The SDG pipeline's own filters (``removed_by_pipeline``: its judges, in generate) come
    first, then the filter stage's checks (``removed``) in the order it applies them.
    """
    by_pipeline = dict(stats.get("removed_by_pipeline", {}))
    removed = dict(stats.get("removed", {}))
    order = [r for r in FILTER_ORDER if r in removed] + sorted(set(removed) - set(FILTER_ORDER))
    steps = [(reason, int(n)) for reason, n in sorted(by_pipeline.items()) if n]
    steps += [(reason, int(removed[reason])) for reason in order if removed[reason]]
    return {
        "leaf": stats["leaf"],
        "parsed": int(stats["kept"]) + sum(n for _, n in steps),
        "removed": steps,
        "kept": int(stats["kept"]),
        # The safety layers' counts per category (labmake.sdg.safety_stats), and the policy.
        "safety": stats.get("safety") or {},
        "safety_policy": _policy_label(stats.get("safety") or {}),
        # Each checked judge's verdict on the leaf's seeds (labmake.sdg.judge_check): one that
        # failed it judged none of the leaf's samples.
        "judge_checks": stats.get("judge_checks") or {},
        # Fewer accepted samples than filter.flag_below: the report says so on top, with why.
        "flagged": bool(stats.get("flagged", False)),
        "hint": stats.get("hint"),
    }


def _policy_label(safety: dict[str, Any]) -> str:
    policy = safety.get("policy")
    names = [policy] if isinstance(policy, dict) else (policy or [])
    return ", ".join(f"{p['name']} v{p['version']} ({p['sha256'][:12]})" for p in names)


def read_timings(folder: Path) -> list[dict[str, Any]]:
    """Per rule: jobs, summed wall seconds and peak memory from Snakemake's benchmark files."""
    rows: dict[str, dict[str, Any]] = {}
    for tsv in sorted(Path(folder).rglob("*.tsv")):
        rule = tsv.relative_to(folder).parts[0]
        with open(tsv, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                entry = rows.setdefault(rule, {"rule": rule, "jobs": 0, "seconds": 0.0, "rss": 0.0})
                entry["jobs"] += 1
                entry["seconds"] += _number(row.get("s"))
                entry["rss"] = max(entry["rss"], _number(row.get("max_rss")))
    rank = {name: i for i, name in enumerate(STAGES)}
    return sorted(rows.values(), key=lambda r: (rank.get(r["rule"], len(STAGES)), r["rule"]))


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:  # Snakemake writes "-" where it measured nothing
        return 0.0


def read_build(
    *,
    f16: Path | None,
    seeds: Sequence[Path],
    filter_stats: Sequence[Path],
    checkpoints: Sequence[Path],
    mix_stats: Path | None,
    benchmarks: Path,
    params: dict[str, Any],
) -> BuildFacts:
    facts = BuildFacts(params=params, code_commit=code_commit())
    if f16 is not None:
        from labmake.export.writer import read_metadata

        facts.provenance = {
            k: v
            for k, v in sorted(read_metadata(f16).items())
            if k.startswith(("labmake.", "general."))
        }
    for path in seeds:
        s = artifacts.read_json(path)
        facts.leaves.append(
            {
                "leaf": s["leaf"],
                "kind": s["kind"],
                "documents": [d["name"] for d in s.get("documents", [])],
                "seed_examples": len(s.get("seed_examples", [])),
                "chunks": len(s.get("chunks", [])),
            }
        )
    facts.leaves.sort(key=lambda leaf: leaf["leaf"])
    facts.funnels = sorted(
        (funnel(artifacts.read_json(p)) for p in filter_stats), key=lambda f: f["leaf"]
    )
    if mix_stats is not None and Path(mix_stats).is_file():
        facts.datasets = dict(sorted(artifacts.read_json(mix_stats).get("sizes", {}).items()))
    for folder in checkpoints:
        metrics = Path(folder) / "metrics.json"
        if metrics.is_file():
            m = artifacts.read_json(metrics)
            phase = m.get("phase", Path(folder).name)
            facts.losses[phase] = [float(v) for v in m["loss"]]
            done = Path(folder) / "labmake_phase.json"
            selected = (
                artifacts.read_json(done).get("selected_checkpoint", {}) if done.is_file() else {}
            )
            facts.checkpoints[phase] = {
                "evals": m.get("heldout_loss", []),
                "chosen_step": m.get("chosen_step", len(m["loss"])),
                "by": selected.get("by", "last_step"),
            }
    facts.timings = read_timings(benchmarks) if Path(benchmarks).is_dir() else []
    return facts
