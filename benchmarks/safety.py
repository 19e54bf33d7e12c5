"""Safety layers on labmake's test set: precision and recall of the deterministic layer and of
the teacher's safety judge.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/safety.py [--no-judge] [--seed N]

The test set is tests/data/safety/cases.yaml (written for labmake: short labelled examples per
category of the shipped policy, safe look-alikes, plain safe text). A case is positive when it
is labelled with a category; a layer flags it when it names any category (its category is
right when it names the label). The judge is the ``safety_judge`` block itself, with
params.yaml's teacher (by default the embedded Gemma 3 270M base) and the shipped policy, each
case shown as the text of one sample; a reply that is no verdict counts as not flagged (the
default ``generate.safety.no_verdict: keep``) and is counted. Targets: the deterministic layer
catches every personal-data case and flags no safe case; the judge's figures are what they are.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests/data/safety/cases.yaml"


def scores(cases: list[dict[str, Any]], verdicts: list[str | None]) -> dict[str, Any]:
    """Precision and recall of flagging (any category), recall per category, safe passed."""
    flagged = [v not in (None, "safe") for v in verdicts]
    positive = [c["label"] != "safe" for c in cases]
    tp = sum(f and p for f, p in zip(flagged, positive, strict=True))
    per: dict[str, list[int]] = {}
    for case, verdict, flag in zip(cases, verdicts, flagged, strict=True):
        hit = per.setdefault(case["label"], [0, 0, 0])  # cases, flagged, right category
        hit[0] += 1
        hit[1] += flag
        hit[2] += verdict == case["label"]
    lookalikes = [f for c, f in zip(cases, flagged, strict=True) if c.get("lookalike")]
    return {
        "precision": tp / max(1, sum(flagged)),
        "recall": tp / max(1, sum(positive)),
        "per_category": per,
        "lookalikes_passed": (len(lookalikes) - sum(lookalikes), len(lookalikes)),
        "no_verdict": sum(v is None for v in verdicts),
    }


def deterministic(cases: list[dict[str, Any]]) -> list[str | None]:
    from labmake.core import safety

    policy = safety.load()
    return [safety.first_category(safety.scan(c["text"], policy), policy) or "safe" for c in cases]


def judge(cases: list[dict[str, Any]], seed: int) -> list[str | None]:
    from labmake.core import config
    from labmake.sdg.blocks.base import Context
    from labmake.sdg.blocks.safety import SafetyJudgeBlock
    from labmake.teacher.complete import complete_all
    from labmake.teacher.registry import open_teacher

    cfg = config.load(ROOT / "params.yaml")
    teacher = open_teacher(cfg.teacher)
    try:
        print(f"judge: {teacher.identity}", flush=True)
        ctx = Context(
            seeds={"leaf": "benchmark/safety", "kind": "skill", "seed_examples": []},
            gen=cfg.generate,
            seed=seed,
            max_tokens=cfg.teacher.max_tokens,
            complete=lambda requests, label: complete_all(teacher, requests, label),
            fits=lambda prompt, n: teacher.count_tokens(prompt) + n <= teacher.n_ctx,
        )
        spec = {"name": "safety_judge", "type": "safety_judge", "columns": ["text"]}
        block = SafetyJudgeBlock("safety_judge", spec, "benchmark")
        rows = [
            {"_id": c["id"], "_seeds": {}, "_templates": {}, "_scores": {}, "text": c["text"]}
            for c in cases
        ]
        kept, rejected = block.run(rows, ctx)
    finally:
        teacher.close()
    # With no_verdict: keep, a no verdict is kept; read every row's verdict back by its id.
    by_id = {r["_id"]: r.get("_safety", {}).get("judge") for r in kept + rejected}
    replies = Counter(r["_verdicts"].get("safety_judge", "") for r in kept + rejected)
    print("most common replies:", dict(replies.most_common(8)))
    return [by_id.get(c["id"]) for c in cases]


def show(name: str, result: dict[str, Any], seconds: float | None = None) -> None:
    took = f", {seconds:.0f} s" if seconds is not None else ""
    passed, total = result["lookalikes_passed"]
    print(
        f"\n{name}: precision {result['precision']:.2f}, recall {result['recall']:.2f}; "
        f"safe look-alikes passed {passed}/{total}; no verdict {result['no_verdict']}{took}"
    )
    print(f"  {'label':<14} {'cases':>5} {'flagged':>8} {'right category':>15}")
    for label, (n, flagged, right) in sorted(result["per_category"].items()):
        print(f"  {label:<14} {n:>5} {flagged:>8} {right:>15}")


def mistakes(cases: list[dict[str, Any]], verdicts: list[str | None]) -> None:
    for case, verdict in zip(cases, verdicts, strict=True):
        if verdict != case["label"]:
            print(f"    {case['id']:<28} {case['label']:<14} -> {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-judge", action="store_true", help="the deterministic layer only")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--verbose", action="store_true", help="list each layer's mistakes")
    args = parser.parse_args()
    cases = yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"]
    labels = Counter(c["label"] for c in cases)
    print(f"{len(cases)} cases: {dict(sorted(labels.items()))}")
    layer = deterministic(cases)
    show("deterministic layer (detectors + lexicon)", scores(cases, layer))
    if args.verbose:
        mistakes(cases, layer)
    if args.no_judge:
        return 0
    start = time.perf_counter()
    verdicts = judge(cases, args.seed)
    show("safety judge", scores(cases, verdicts), time.perf_counter() - start)
    if args.verbose:
        mistakes(cases, verdicts)
    both = [d if d != "safe" else v for d, v in zip(layer, verdicts, strict=True)]
    show("both layers (a sample either flags is removed)", scores(cases, both))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
