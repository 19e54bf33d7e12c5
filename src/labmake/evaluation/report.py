"""The build report: build/eval/report.json for tools and build/report.html for a person.

report.json is :func:`labmake.evaluation.evaluate.summarize` of every model's scores. report.html is one
self-contained file (plots are inline SVG data URIs, no external requests) that shows what went
into the build, the synthetic-data funnel of every leaf, the training loss of every phase, the
evaluation per leaf with confidence intervals, the GGUF files with their speed, and the time
each stage took. Everything in it is deterministic except the measured speeds and stage
timings, which the page marks as such.
"""

from __future__ import annotations

import base64
import csv
import io as _io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from labmake import __version__
from labmake.core import artifacts, paths
from labmake.core.config import EvaluateConfig
from labmake.evaluation import evaluate
from labmake.evaluation.provenance import git_commit

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
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
# Models and filters get these in order; green is kept for "kept" in the funnel.
PALETTE = ("#9aa5b1", "#f0a35e", "#5b8def", "#ae3ec9", "#e8590c", "#0c8599", "#3b5bdb", "#f783ac")
KEPT = "#2f9e44"


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


# --------------------------------------------------------------------------- reading the build


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
    }


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


# --------------------------------------------------------------------------- plots


@cache
def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Same data, same bytes: fixed ids in the SVG, text as paths (no font lookups at view time).
    plt.rcParams.update(
        {
            "svg.hashsalt": "labmake",
            "svg.fonttype": "path",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _svg(fig: Any) -> str:
    """The figure as a data URI (SVG, base64), then closed."""
    plt = _pyplot()
    buf = _io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _short(leaf: str) -> str:
    return leaf.rsplit("/", 1)[-1]


def plot_funnels(funnels: Sequence[dict[str, Any]]) -> str | None:
    if not funnels:
        return None
    plt = _pyplot()
    reasons = list(dict.fromkeys(r for f in funnels for r, _ in f["removed"]))
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(funnels) + 1.4))
    labels = [_short(f["leaf"]) for f in funnels]
    kept = [f["kept"] for f in funnels]
    ax.barh(labels, kept, color=KEPT, label="kept")
    left = [float(k) for k in kept]
    for i, reason in enumerate(reasons):
        counts = [dict(f["removed"]).get(reason, 0) for f in funnels]
        ax.barh(labels, counts, left=left, color=PALETTE[i % len(PALETTE)], label=reason)
        left = [a + b for a, b in zip(left, counts, strict=True)]
    ax.invert_yaxis()
    ax.set_xlabel("items the teacher wrote (kept, then removed by each filter)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=4, frameon=False, fontsize=8)
    return _svg(fig)


def plot_losses(
    losses: dict[str, list[float]], checkpoints: dict[str, dict[str, Any]] | None = None
) -> str | None:
    """Training loss per step, phases in a row; held-out loss at each checkpoint (dots) and
    the checkpoint each phase kept (a ring)."""
    if not losses:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    start = 0
    for i, (phase, values) in enumerate(losses.items()):
        colour = PALETTE[(i + 2) % len(PALETTE)]
        steps = list(range(start + 1, start + len(values) + 1))
        ax.plot(steps, values, color=colour, label=phase, linewidth=1.4)
        ckpt = (checkpoints or {}).get(phase, {})
        held = [e for e in ckpt.get("evals", []) if "heldout_loss" in e]
        if held:
            xs = [start + e["step"] for e in held]
            ys = [e["heldout_loss"] for e in held]
            ax.plot(
                xs,
                ys,
                "o--",
                color=colour,
                markersize=4,
                linewidth=0.8,
                alpha=0.8,
                label=f"{phase}: held-out loss",
            )
            kept = [e for e in held if e["step"] == ckpt.get("chosen_step")]
            if kept:
                ax.plot(
                    [start + kept[0]["step"]],
                    [kept[0]["heldout_loss"]],
                    "o",
                    markersize=10,
                    markerfacecolor="none",
                    color=colour,
                    label=f"{phase}: kept ({ckpt.get('by')})",
                )
        if start:
            ax.axvline(start + 0.5, color="#adb5bd", linewidth=0.8, linestyle="--")
        start += len(values)
    ax.set_xlabel("optimizer step (phases one after the other)")
    ax.set_ylabel("loss (nats/token)")
    # Below the axes: inside, it would hide the held-out points of the last phase.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False, fontsize=8)
    return _svg(fig)


def plot_metric(
    report: dict[str, Any],
    metric: str,
    models: Sequence[str],
    ylabel: str,
    top: float | None = None,
) -> str | None:
    """Grouped bars per leaf (and overall), one bar per model, with interval whiskers."""
    groups = [("overall", report["overall"]), *report["leaves"].items()]
    groups = [(name, block[metric]) for name, block in groups if metric in block]
    models = [m for m in models if any(m in b["models"] for _, b in groups)]
    if not groups or not models:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(groups) * (len(models) + 1)), 3.4))
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        xs, means, lows, highs = [], [], [], []
        for g, (_, block) in enumerate(groups):
            stat = block["models"].get(model)
            if not stat or stat["mean"] is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            means.append(stat["mean"])
            ci = stat["ci"] or [stat["mean"], stat["mean"]]
            lows.append(stat["mean"] - ci[0])
            highs.append(ci[1] - stat["mean"])
        ax.bar(
            xs,
            means,
            width,
            yerr=[lows, highs],
            capsize=2,
            color=PALETTE[i % len(PALETTE)],
            label=model,
            error_kw={"elinewidth": 0.8},
        )
    ax.set_xticks(range(len(groups)), [_short(name) for name, _ in groups])
    if len(groups) > 3:  # leaf names are long: slant them so they never overlap
        ax.tick_params(axis="x", labelrotation=20)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    ax.set_ylabel(ylabel)
    if top is not None:  # a bounded score: show its whole range, so a 0 reads as 0
        ax.set_ylim(0, top)
    ax.legend(
        frameon=False,
        fontsize=8,
        ncol=min(len(models), 7),
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0),
    )
    return _svg(fig)


def plot_ggufs(rows: Sequence[dict[str, Any]]) -> str | None:
    rows = [r for r in rows if r.get("bytes")]
    if not rows:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
    names = [r["model"] for r in rows]
    left.bar(names, [r["bytes"] / 1e6 for r in rows], color="#5b8def")
    left.set_ylabel("file size (MB)")
    right.bar(names, [r.get("tokens_per_s") or 0 for r in rows], color="#f0a35e")
    right.set_ylabel("tokens/s (measured, varies)")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return _svg(fig)


def plot_timings(timings: Sequence[dict[str, Any]]) -> str | None:
    if not timings:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(timings) + 1))
    ax.barh([t["rule"] for t in timings], [t["seconds"] for t in timings], color="#9aa5b1")
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds, summed over the rule's jobs (measured, varies)")
    return _svg(fig)


# --------------------------------------------------------------------------- page


@cache
def _templates():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("labmake.evaluation", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["short"] = _short
    return env


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def gguf_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, r in results.items():
        if "gguf" not in r:
            continue
        timing = r.get("timing", {})
        rows.append(
            {
                "model": name,
                "file": r["gguf"]["file"],
                "bytes": r["gguf"]["bytes"],
                "tokens_per_s": timing.get("tokens_per_s"),
                "completion_tokens": timing.get("completion_tokens"),
                "seconds": timing.get("seconds"),
            }
        )
    return rows


def render_html(
    report: dict[str, Any], results: dict[str, dict[str, Any]], facts: BuildFacts
) -> str:
    hf_models = [m for m in results if "reference_nll" in results[m]]
    answer_models = [m for m in results if "answers" in results[m]]
    ggufs = gguf_rows(results)
    plots = {
        "funnels": plot_funnels(facts.funnels),
        "losses": plot_losses(facts.losses, facts.checkpoints),
        "nll": plot_metric(report, "reference_nll", hf_models, "reference NLL (lower is better)"),
        "mc": plot_metric(report, "multiple_choice", hf_models, "multiple-choice accuracy", 1.0),
        "f1": plot_metric(report, "token_f1", answer_models, "token F1 of the answer", 1.0),
        "rouge": plot_metric(report, "rouge_l", answer_models, "ROUGE-L of the answer", 1.0),
        "judge": plot_metric(report, "judge", answer_models, "judge grade (1-10)", 10.0),
        "ggufs": plot_ggufs(ggufs),
        "timings": plot_timings(facts.timings),
    }
    return (
        _templates()
        .get_template(TEMPLATE)
        .render(
            report=report,
            facts=facts,
            plots=plots,
            hf_models=hf_models,
            answer_models=answer_models,
            ggufs=ggufs,
            labmake_version=__version__,
            params_yaml=yaml.safe_dump(facts.params, sort_keys=True, default_flow_style=None),
            metrics=list(evaluate.LOWER_IS_BETTER),
            tuned=evaluate.TUNED,
            base=evaluate.BASE,
            confidence=round(100 * report["settings"]["confidence"]),
        )
    )


def run(
    inputs: Mapping[str, str | Sequence[str]],
    *,
    cfg: EvaluateConfig,
    seed: int,
    params: dict[str, Any],
    out_json: Path,
    out_html: Path,
    benchmarks: Path = Path(paths.BENCHMARKS),
) -> dict[str, Any]:
    """Aggregate every model's scores, write report.json and report.html, then (only then)
    fail on a regression when params.yaml asks for it.

    ``inputs`` are the report rule's named inputs: ``eval``, ``mc`` (multiple_choice.jsonl),
    ``models`` (build/eval/{model}.json),
    ``f16``, ``seeds``, ``filter_stats``, ``checkpoints``, ``mix_stats``.
    """

    def many(name: str) -> list[Path]:
        value = inputs.get(name, [])
        return [Path(value)] if isinstance(value, str) else [Path(v) for v in value]

    eval_path = Path(str(inputs["eval"]))
    facts = read_build(
        f16=Path(str(inputs["f16"])) if inputs.get("f16") else None,
        seeds=many("seeds"),
        filter_stats=many("filter_stats"),
        checkpoints=many("checkpoints"),
        mix_stats=Path(str(inputs["mix_stats"])) if inputs.get("mix_stats") else None,
        benchmarks=benchmarks,
        params=params,
    )
    items = evaluate.read_items(eval_path)
    mc_path = Path(str(inputs["mc"])) if inputs.get("mc") else None
    results = evaluate.load_results(many("models"), eval_path, mc_path)
    report = evaluate.summarize(items, results, cfg, seed)
    evaluate.log_summary(report)
    artifacts.write_json(out_json, report)
    artifacts.write_text_atomic(out_html, render_html(report, results, facts))
    log.info("wrote %s and %s", out_json, out_html)
    if report["regressions"] and cfg.fail_on_regression:
        raise evaluate.RegressionError(
            "the tuned model is worse than the base beyond the interval: "
            + evaluate.describe_regressions(report["regressions"])
            + f" (see {out_html}; Snakemake removes a failed job's outputs, so rerun with "
            "--keep-incomplete to keep them). Set evaluate.fail_on_regression: false in "
            "params.yaml to report regressions without failing."
        )
    return report
