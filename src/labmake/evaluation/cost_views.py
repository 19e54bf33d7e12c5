"""What tuning cost, shown: the report page's retention plot, and the report's numbers in the
run tracker (build/tracking/evaluation), beside the training curves of the same build."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labmake.core.tracking import open_run
from labmake.evaluation.plots import PALETTE, _pyplot, _svg


def plot_retention(report: Mapping[str, Any]) -> str | None:
    """KL to the base per model, with interval whiskers (the base itself is 0)."""
    section = report.get("retention")
    if not section:
        return None
    stats = section["general"]["kl"]["models"]
    models = list(stats)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(models)), 2.8))
    means = [stats[m]["mean"] for m in models]
    cis = [stats[m]["ci"] or [stats[m]["mean"]] * 2 for m in models]
    ax.bar(
        range(len(models)),
        means,
        0.6,
        yerr=[
            [m - c[0] for m, c in zip(means, cis, strict=True)],
            [c[1] - m for m, c in zip(means, cis, strict=True)],
        ],
        capsize=3,
        color=[PALETTE[i % len(PALETTE)] for i in range(len(models))],
        error_kw={"elinewidth": 0.8},
    )
    limit = section.get("max_retention_loss")
    if limit is not None:
        ax.axhline(limit, color="#c92a2a", linewidth=0.9, linestyle="--")
    ax.set_xticks(range(len(models)), models)
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_ylabel("KL to the base (nats/token)")
    return _svg(fig)


def _markdown(report: Mapping[str, Any]) -> str:
    """The per-leaf reference NLL of every model, as a table for the tracker's text tab."""
    nll = report.get("overall", {}).get("reference_nll", {})
    models = list(nll.get("models", {}))
    rows = [("overall", report.get("overall", {})), *report.get("leaves", {}).items()]
    lines = ["| leaf | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    for leaf, block in rows:
        stats = block.get("reference_nll", {}).get("models", {})
        cells = [f"{stats[m]['mean']:.4f}" if m in stats else "-" for m in models]
        lines.append(f"| {leaf} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def track_report(report: Mapping[str, Any], kind: str | None) -> None:
    """build/tracking/evaluation: per leaf and model the mean reference NLL, the retention KL
    and what each knowledge leaf kept. The step is the model's place in the report's order
    (the text tab names them), so a leaf's curve reads base -> each phase -> tuned -> GGUFs."""
    if kind in (None, "none"):
        return
    order = list(report.get("models", {}))
    retention = (report.get("retention") or {}).get("general", {}).get("kl", {})
    order += [m for m in retention.get("models", {}) if m not in order]
    with open_run("evaluation", kind) as tracker:
        tracker.text("models", "\n".join(f"{i}: {m}" for i, m in enumerate(order)))
        tracker.text("reference_nll", _markdown(report))
        for leaf, block in [
            ("overall", report.get("overall", {})),
            *report.get("leaves", {}).items(),
        ]:
            for metric in ("reference_nll", "multiple_choice", "token_f1"):
                for model, stat in block.get(metric, {}).get("models", {}).items():
                    tracker.scalar(f"{metric}/{leaf}", stat["mean"], order.index(model))
        section = report.get("retention") or {}
        for key, stats in section.get("general", {}).items():
            for model, stat in stats["models"].items():
                tracker.scalar(f"retention/{key}", stat["mean"], order.index(model))
        for leaf, kept in (report.get("knowledge_kept") or {}).get("leaves", {}).items():
            tracker.scalar(f"knowledge_kept/{leaf}", kept["kept"], 0)
