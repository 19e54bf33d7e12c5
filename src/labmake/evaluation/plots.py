"""The report's plots, each a self-contained SVG data URI (no external requests).

Plots are byte-stable: the same data gives the same SVG (fixed ids, text as paths, no date), so
report.html differs between two builds only where the page says a value was measured.
"""

from __future__ import annotations

import base64
import io as _io
from collections.abc import Sequence
from functools import cache
from typing import Any

# Models and filters get these in order; green is kept for "kept" in the funnel.
PALETTE = ("#9aa5b1", "#f0a35e", "#5b8def", "#ae3ec9", "#e8590c", "#0c8599", "#3b5bdb", "#f783ac")
KEPT = "#2f9e44"


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


def short_leaf(leaf: str) -> str:
    """A leaf's last folder: full leaf paths are too long for axis labels."""
    return leaf.rsplit("/", 1)[-1]


def plot_funnels(funnels: Sequence[dict[str, Any]]) -> str | None:
    if not funnels:
        return None
    plt = _pyplot()
    reasons = list(dict.fromkeys(r for f in funnels for r, _ in f["removed"]))
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(funnels) + 1.4))
    labels = [short_leaf(f["leaf"]) for f in funnels]
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
    ax.set_xticks(range(len(groups)), [short_leaf(name) for name, _ in groups])
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
