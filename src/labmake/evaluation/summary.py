"""report.json: every model side by side, per leaf and overall, with intervals and regressions.

Only deterministic values go in: no timings (those stay in build/eval/{model}.json and the
HTML report), so two builds of the same inputs give the same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from labmake.core.config import EvaluateConfig
from labmake.evaluation.metrics import GATED, LOWER_IS_BETTER, METRIC_NOTES
from labmake.evaluation.models import BASE, TUNED
from labmake.evaluation.multiple_choice import Choice, choices_of
from labmake.evaluation.statistics import metric_block

log = logging.getLogger(__name__)

# Metric -> model -> one value per scoring unit (None where the model has no value).
Values = dict[str, dict[str, list[float | None]]]


class RegressionError(ValueError):
    """The tuned model is worse than the base beyond the interval (evaluate.fail_on_regression)."""


def per_unit(results: dict[str, dict[str, Any]], metric: str) -> dict[str, list[float | None]]:
    """Model -> one value per scoring unit (item, or multiple-choice question) for ``metric``."""
    out: dict[str, list[float | None]] = {}
    for name, result in results.items():
        if metric == "multiple_choice" and "multiple_choice" in result:
            out[name] = [1.0 if q["correct"] else 0.0 for q in result["multiple_choice"]]
        elif metric in result and metric != "multiple_choice":
            out[name] = [None if v is None else float(v) for v in result[metric]]
    return out


def _shared_choices(results: dict[str, dict[str, Any]]) -> list[Choice]:
    """The multiple-choice questions every model answered (each model's file records them)."""
    seen = {name: choices_of(r) for name, r in results.items() if "multiple_choice" in r}
    if not seen:
        return []
    first_name, first = next(iter(seen.items()))
    for name, choices in seen.items():
        if choices != first:
            raise ValueError(
                f"build/eval/{name}.json and build/eval/{first_name}.json answered different "
                "multiple-choice questions; rebuild them (snakemake --forcerun evaluate)"
            )
    return first


def _scores(
    values: Values,
    leaf_of_unit: dict[str, list[str]],
    leaf: str | None,
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    """Every metric's block for one leaf (``None``: overall), and how many units it rests on."""
    where = leaf or "overall"
    out: dict[str, Any] = {}
    for metric, by_model in values.items():
        if not by_model:
            continue
        kind = "choices" if metric == "multiple_choice" else "items"
        units = [u for u, lf in enumerate(leaf_of_unit[kind]) if leaf in (None, lf)]
        if not units:
            continue
        out[metric] = metric_block(by_model, units, cfg, seed, where, metric)
    out["n"] = sum(1 for lf in leaf_of_unit["items"] if leaf in (None, lf))
    out["n_multiple_choice"] = sum(1 for lf in leaf_of_unit["choices"] if leaf in (None, lf))
    return out


def _regressed(metric: str, delta: dict[str, Any]) -> bool:
    ci = delta.get("ci")
    if ci is None:
        return False
    # Worse beyond the interval: the whole interval of (tuned - base) lies on the worse side.
    return ci[0] > 0 if LOWER_IS_BETTER[metric] else ci[1] < 0


def _regressions(
    overall: dict[str, Any], leaves: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Where the tuned model is worse than the base beyond the interval, on a gated metric."""
    regressions = []
    for where, block in [("overall", overall), *leaves.items()]:
        for metric in GATED:
            delta = block.get(metric, {}).get("delta", {}).get(TUNED)
            if delta and _regressed(metric, delta):
                regressions.append(
                    {"leaf": where, "metric": metric, "delta": delta["mean"], "ci": delta["ci"]}
                )
    return regressions


def _improved_leaves(leaves: dict[str, dict[str, Any]]) -> list[str]:
    """Leaves whose reference NLL the tuned model lowered (on the mean)."""
    return sorted(
        leaf
        for leaf, s in leaves.items()
        if (d := s.get("reference_nll", {}).get("delta", {}).get(TUNED))
        and d["mean"] is not None
        and d["mean"] < 0
    )


def _judges(results: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({r["judge_identity"] for r in results.values() if "judge_identity" in r})


def _models(results: dict[str, dict[str, Any]], values: Values) -> dict[str, Any]:
    """Per model: the metrics it has scores for, and its GGUF file if it is one."""
    return {
        name: {
            "scores": sorted(k for k in LOWER_IS_BETTER if k in values and name in values[k]),
            **({"gguf": r["gguf"]} if "gguf" in r else {}),
        }
        for name, r in results.items()
    }


def _choice_table(
    choices: Sequence[Choice], results: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every multiple-choice question with the option each model chose."""
    return [
        {
            "leaf": c.leaf,
            "question": c.question,
            "options": list(c.options),
            "correct": c.correct,
            "chosen": {
                name: r["multiple_choice"][k]["chosen"]
                for name, r in results.items()
                if "multiple_choice" in r
            },
        }
        for k, c in enumerate(choices)
    ]


def _samples(
    items: Sequence[dict[str, Any]], results: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every item with each GGUF's answer (and grade, when there is a judge) beside the reference."""
    gguf_models = [m for m, r in results.items() if "answers" in r]
    judged = bool(_judges(results))
    return [
        {
            "leaf": item["leaf"],
            "question": item["question"],
            "reference": item["answer"],
            "answers": {m: results[m]["answers"][i] for m in gguf_models},
            **(
                {"judge": {m: results[m]["judge"][i] for m in gguf_models if "judge" in results[m]}}
                if judged
                else {}
            ),
        }
        for i, item in enumerate(items)
    ]


def summarize(
    items: Sequence[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    """All models side by side, per leaf and overall; regressions; sample answers.

    Only deterministic values: no timings (those stay in build/eval/{model}.json and the HTML
    report), so two builds of the same inputs give the same bytes.
    """
    choices = _shared_choices(results)
    leaf_of_unit = {
        "items": [item["leaf"] for item in items],
        "choices": [c.leaf for c in choices],
    }
    values = {m: per_unit(results, m) for m in LOWER_IS_BETTER}
    leaves = {
        leaf: _scores(values, leaf_of_unit, leaf, cfg, seed)
        for leaf in sorted({*leaf_of_unit["items"], *leaf_of_unit["choices"]})
    }
    overall = _scores(values, leaf_of_unit, None, cfg, seed)
    return {
        "settings": {
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "confidence": cfg.confidence,
            "judge": ",".join(_judges(results)) or None,
            "seed": seed,
        },
        "metric_notes": METRIC_NOTES,
        "models": _models(results, values),
        "overall": overall,
        "leaves": leaves,
        "regressions": _regressions(overall, leaves),
        "improved_leaves": _improved_leaves(leaves),
        "multiple_choice": _choice_table(choices, results),
        "samples": _samples(items, results),
    }


def describe_regressions(regressions: Sequence[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r['leaf']}: {r['metric']} tuned-base {r['delta']:+.4f} "
        f"(CI {r['ci'][0]:+.4f}..{r['ci'][1]:+.4f})"
        for r in regressions
    )


def log_summary(report: dict[str, Any]) -> None:
    overall = report["overall"]
    nll = overall.get("reference_nll")
    if nll and TUNED in nll.get("delta", {}):
        d = nll["delta"][TUNED]
        log.info(
            "reference NLL: base %.4f -> tuned %.4f (delta %+.4f, %d%% CI %s)",
            nll["models"][BASE]["mean"],
            nll["models"][TUNED]["mean"],
            d["mean"],
            round(100 * report["settings"]["confidence"]),
            d["ci"],
        )
    for leaf, block in report["leaves"].items():
        d = block.get("reference_nll", {}).get("delta", {}).get(TUNED)
        if d:
            log.info("  %s: NLL delta %+.4f CI %s", leaf, d["mean"], d["ci"])
    if report["regressions"]:
        bar = "!" * 78
        log.warning(
            "%s\nREGRESSION: the tuned model is worse than the base beyond the interval: %s\n%s",
            bar,
            describe_regressions(report["regressions"]),
            bar,
        )
