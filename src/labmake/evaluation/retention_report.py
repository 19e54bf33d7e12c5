"""What tuning cost, for report.json: drift from the base on general text, the user's general
Q&A, what each knowledge leaf kept of its knowledge-phase gain after the later phases, and the
lm-evaluation-harness tasks when there are any.

Deterministic like the rest of report.json: means and seeded paired-bootstrap intervals only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts, tracking
from labmake.core.config import EvaluateConfig
from labmake.core.hashing import derive_seed
from labmake.evaluation.models import BASE, PHASE_PREFIX, TUNED
from labmake.evaluation.statistics import bootstrap_ci

log = logging.getLogger(__name__)

# A knowledge leaf that kept less than this share of its knowledge-phase gain is flagged,
# whatever its interval: on a few items an interval rarely excludes zero.
KEPT_FLAG = 0.5
NOTES = {
    "kl": "mean over the retention prompts of the per-token KL(base || model), in nats, between "
    "next-token distributions on continuations the base itself sampled (temperature 1) after "
    "general prompts no leaf taught; the distributions are coarsened to the base's top-k tokens "
    "and 'any other', which makes it a lower bound of the full KL; 0 = no drift",
    "nll": "mean NLL (nats/token) of the base's own continuations under the model; the model's "
    "minus the base's estimates the KL between whole continuations",
    "qa": "mean NLL (nats/token) of the answers of each general Q&A set in "
    "evaluate.retention.qa; lower is better",
    "kept": "per knowledge leaf: (base NLL - final NLL) / (base NLL - NLL after the knowledge "
    "phase), on its held-out items; below 0.5 is flagged",
}


class RetentionError(ValueError):
    """The tuned model drifted from the base beyond evaluate.max_retention_loss."""


def _stat(values: Sequence[float], cfg: EvaluateConfig, seed: int) -> dict[str, Any]:
    ci = bootstrap_ci(
        values, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=seed
    )
    mean = round(sum(values) / len(values), 6) if values else None
    return {"mean": mean, "ci": ci, "n": len(values)}


def block(
    by_model: Mapping[str, Sequence[float]], cfg: EvaluateConfig, seed: int, where: str
) -> dict[str, Any]:
    """Each model's mean with its interval, and its paired difference to the base."""
    out: dict[str, Any] = {"models": {}, "delta": {}, "lower_is_better": True}
    base = by_model.get(BASE)
    for name, values in by_model.items():
        out["models"][name] = _stat(list(values), cfg, derive_seed(seed, "retention", where, name))
        if name != BASE and base is not None and len(base) == len(values):
            diffs = [v - b for v, b in zip(values, base, strict=True)]
            out["delta"][name] = _stat(
                diffs, cfg, derive_seed(seed, "retention", where, name, "delta")
            )
    return out


def retention(
    results: Mapping[str, Mapping[str, Any]], reference: Path | None, cfg: EvaluateConfig, seed: int
) -> dict[str, Any] | None:
    """The retention section: general text (KL, NLL of the base's text) and each Q&A set."""
    scored = {m: r for m, r in results.items() if "retention" in r}
    if not scored:
        return None
    if reference is not None:
        expected = artifacts.sha256_file(reference)
        stale = sorted(m for m, r in scored.items() if r.get("retention_sha256") != expected)
        if stale:
            raise ValueError(
                f"build/eval/{{{','.join(stale)}}}.json scored another {reference}; rebuild them "
                "(snakemake --forcerun evaluate)"
            )
    general = {
        key: block({m: r["retention"][key] for m, r in scored.items()}, cfg, seed, f"general-{key}")
        for key in ("kl", "nll")
    }
    sets = sorted({s for r in scored.values() for s in r.get("retention_qa", {})})
    qa = {
        name: block(
            {m: r["retention_qa"][name] for m, r in scored.items()}, cfg, seed, f"qa-{name}"
        )
        for name in sets
    }
    tuned_kl = general["kl"]["models"].get(TUNED, {}).get("mean")
    limit = cfg.max_retention_loss
    return {
        "prompts": general["kl"]["models"][next(iter(scored))]["n"],
        "general": general,
        "qa": qa,
        "max_retention_loss": limit,
        "exceeded": limit is not None and tuned_kl is not None and tuned_kl > limit,
        "notes": NOTES,
    }


def _leaf_mean(values: Sequence[float], units: Sequence[int]) -> float:
    return sum(values[u] for u in units) / len(units)


def knowledge_kept(
    items: Sequence[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
    phases: Sequence[Mapping[str, Any]],
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any] | None:
    """Per knowledge leaf: its NLL gain after the (last) knowledge phase, after the last phase,
    the share kept, and the paired change between the two with its interval."""
    names = [str(p["name"]) for p in phases]
    knowledge = [str(p["name"]) for p in phases if p.get("dataset") == "knowledge"]
    if not knowledge or knowledge[-1] == names[-1]:
        return None  # no phase after the knowledge phase: nothing could be forgotten
    after = PHASE_PREFIX + knowledge[-1]
    nll = {m: results[m].get("reference_nll") for m in (BASE, after, TUNED) if m in results}
    if len(nll) < 3 or any(v is None for v in nll.values()):
        return None
    leaves: dict[str, Any] = {}
    for leaf in sorted({i["leaf"] for i in items if i.get("kind") == "knowledge"}):
        units = [u for u, i in enumerate(items) if i["leaf"] == leaf]
        base, mid, final = (_leaf_mean(nll[m], units) for m in (BASE, after, TUNED))
        gain, kept_gain = base - mid, base - final
        kept = round(kept_gain / gain, 4) if gain > 0 else None
        lost = [nll[TUNED][u] - nll[after][u] for u in units]
        leaves[leaf] = {
            "n": len(units),
            "base": round(base, 6),
            "after_knowledge": round(mid, 6),
            "final": round(final, 6),
            "gain_knowledge": round(gain, 6),
            "gain_final": round(kept_gain, 6),
            "kept": kept,
            "lost": _stat(lost, cfg, derive_seed(seed, "kept", leaf)),
            "flagged": kept is not None and kept < KEPT_FLAG,
        }
    return {
        "knowledge_phase": knowledge[-1],
        "final": TUNED,
        "flag_below": KEPT_FLAG,
        "leaves": leaves,
        "flagged": sorted(leaf for leaf, v in leaves.items() if v["flagged"]),
    }


def lm_eval(paths_: Sequence[Path]) -> dict[str, Any] | None:
    """Each model's lm-evaluation-harness results (build/eval/lm-eval/{model}.json)."""
    if not paths_:
        return None
    runs = [artifacts.read_json(p) for p in paths_]
    return {
        r["model"]: {k: r[k] for k in ("tasks", "n_shot", "n_samples", "settings")} for r in runs
    }


def sections(
    items: Sequence[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any]],
    cfg: EvaluateConfig,
    seed: int,
    *,
    params: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> dict[str, Any]:
    """The report.json sections this module adds (only those the build has data for).
    ``inputs``: the report rule's, ``retention`` (the reference) and ``lm_eval`` among them."""
    phases = params.get("train", {}).get("phases", [])
    reference = Path(str(inputs["retention"])) if inputs.get("retention") else None
    lm_eval_paths = inputs.get("lm_eval") or []
    if isinstance(lm_eval_paths, str):
        lm_eval_paths = [lm_eval_paths]
    found = {
        "retention": retention(results, reference, cfg, seed),
        "knowledge_kept": knowledge_kept(items, results, phases, cfg, seed),
        "lm_eval": lm_eval([Path(p) for p in lm_eval_paths]),
    }
    return {k: v for k, v in found.items() if v is not None}


def log_and_check(report: Mapping[str, Any], html: Path, params: Mapping[str, Any]) -> None:
    """Say what tuning cost in the log and the run tracker (build/tracking/evaluation); raise
    when evaluate.max_retention_loss is exceeded."""
    from labmake.evaluation.cost_views import track_report

    track_report(report, tracking.kind_of(params))
    kept = report.get("knowledge_kept")
    for leaf, v in (kept or {}).get("leaves", {}).items():
        log.info(
            "  %s: kept %s of its %s-phase NLL gain (%+.4f -> %+.4f)",
            leaf,
            "-" if v["kept"] is None else f"{100 * v['kept']:.0f}%",
            kept["knowledge_phase"],
            -v["gain_knowledge"],
            -v["gain_final"],
        )
    if kept and kept["flagged"]:
        log.warning(
            "FORGETTING: %s lost more than half of what the knowledge phase taught them; raise "
            "the later phases' replay_ratio or use select_by: heldout_all",
            ", ".join(kept["flagged"]),
        )
    section = report.get("retention")
    if not section:
        return
    kl = section["general"]["kl"]
    for name, s in kl["models"].items():
        log.info("  retention %s: KL to the base %.4f nats/token %s", name, s["mean"], s["ci"])
    if section["exceeded"]:
        tuned = kl["models"][TUNED]
        raise RetentionError(
            f"the tuned model drifted from the base by KL {tuned['mean']:.4f} nats/token on "
            f"general text (interval {tuned['ci']}), above evaluate.max_retention_loss "
            f"{section['max_retention_loss']} (see {html}; Snakemake removes a failed job's "
            "outputs, so rerun with --keep-incomplete to keep them). Train less (fewer steps, a "
            "lower learning_rate), weigh drift into the checkpoint choice "
            "(train.phases[].retention_weight), or raise evaluate.max_retention_loss"
        )
