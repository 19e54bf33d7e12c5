"""What the safety layers did to a leaf, per layer and per category, read from its records.

The filter stage writes this into ``build/filtered/{leaf}.stats.json`` under ``safety``; the
report's funnel and ``labmake data show`` read it from there. Shape::

    {"policy": {"name": "labmake", "version": 1, "sha256": "..."},   # None: no safety block ran
     "checked": {"detectors": 52, "judge": 31},     # rows each layer looked at
     "removed": {"detectors": {"personal_data": 2}, "judge": {"violence": 1}},
     "no_verdict": 3,                               # judge replies that were no verdict
     "judge": "on"}                                 # "off": generate.safety.judge was false
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from labmake.sdg.blocks.safety import DETECTORS, JUDGE

LAYERS = (DETECTORS, JUDGE)


def safety_stats(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per layer: rows checked and rows removed by category, over a leaf's generated records."""
    checked: Counter[str] = Counter()
    removed: dict[str, Counter[str]] = {layer: Counter() for layer in LAYERS}
    policies: dict[str, dict[str, Any]] = {}
    no_verdict = 0
    judge_off = False
    for record in records:
        info = record.get("safety")
        if not info:
            continue
        policies[info["policy"]["sha256"]] = info["policy"]
        if "detectors" in info:
            checked[DETECTORS] += 1
        if "judge" in info:
            judge_off |= info["judge"] == "off"
            checked[JUDGE] += info["judge"] != "off"
            no_verdict += info["judge"] is None
        if "removed" in info:
            removed[info["removed"]["layer"]][info["removed"]["category"]] += 1
    if not policies:
        return {"policy": None, "checked": {}, "removed": {}, "no_verdict": 0, "judge": "none"}
    # One policy per run (every safety block loads generate.safety.policy); records put
    # together from several runs would list each.
    ordered = sorted(policies.values(), key=lambda p: (p["name"], p["version"], p["sha256"]))
    return {
        "policy": ordered[0] if len(ordered) == 1 else ordered,
        "checked": {layer: checked[layer] for layer in LAYERS},
        "removed": {layer: dict(sorted(removed[layer].items())) for layer in LAYERS},
        "no_verdict": no_verdict,
        "judge": "off" if judge_off and not checked[JUDGE] else "on",
    }


def describe(stats: dict[str, Any]) -> list[str]:
    """The ``safety`` entry of a leaf's stats as lines for people (``labmake data show``)."""
    policy = stats.get("policy")
    if not policy:
        return ["safety: no safety block ran"]
    names = [policy] if isinstance(policy, dict) else policy
    label = ", ".join(f"{p['name']} v{p['version']} ({p['sha256'][:12]})" for p in names)
    lines = [f"safety policy: {label}"]
    for layer in LAYERS:
        gone = stats["removed"].get(layer, {})
        parts = ", ".join(f"{category} {n}" for category, n in gone.items()) or "none"
        if layer == JUDGE and stats.get("judge") == "off":
            lines.append("  judge: off (generate.safety.judge: false)")
            continue
        lines.append(
            f"  {layer}: {stats['checked'].get(layer, 0)} checked, "
            f"{sum(gone.values())} removed ({parts})"
        )
    if stats.get("no_verdict"):
        lines.append(f"  judge replies that were no verdict: {stats['no_verdict']}")
    return lines
