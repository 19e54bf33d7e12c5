"""Paired bootstrap intervals: how sure a difference to the base is, on a few items per leaf.

Every interval is seeded from the build seed, the metric, the place (a leaf or overall) and the
model, so the same scores always give the same report.json bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labmake.core.config import EvaluateConfig
from labmake.core.hashing import derive_seed
from labmake.evaluation.metrics import LOWER_IS_BETTER
from labmake.evaluation.models import BASE


def bootstrap_ci(
    values: Sequence[float], *, resamples: int, confidence: float, seed: int
) -> list[float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None when there are none)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _stat(values: Sequence[float], cfg: EvaluateConfig, seed: int) -> dict[str, Any]:
    return {
        "mean": _mean(values),
        "ci": bootstrap_ci(
            values, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=seed
        ),
        "n": len(values),
    }


def metric_block(
    values: dict[str, list[float | None]],
    units: Sequence[int],
    cfg: EvaluateConfig,
    seed: int,
    where: str,
    metric: str,
) -> dict[str, Any]:
    """Each model's mean with its interval on ``units``, and its paired delta to the base."""
    models = {}
    deltas = {}
    for name, vals in values.items():
        present = [float(v) for u in units if (v := vals[u]) is not None]
        models[name] = _stat(present, cfg, derive_seed(seed, "bootstrap", metric, where, name))
        if name != BASE and BASE in values:
            base = values[BASE]
            diffs = [
                float(vals[u]) - float(base[u])  # type: ignore[arg-type]
                for u in units
                if vals[u] is not None and base[u] is not None
            ]
            deltas[name] = _stat(
                diffs, cfg, derive_seed(seed, "bootstrap", metric, where, name, "delta")
            )
        missing = sum(vals[u] is None for u in units)
        if missing:
            models[name]["missing"] = missing
    block: dict[str, Any] = {"models": models, "lower_is_better": LOWER_IS_BETTER[metric]}
    if deltas:
        block["delta"] = deltas
    return block
