"""Is a judge worth asking on this leaf? Its verdicts on the leaf's own seeds say.

A judge block with ``check: {swap: answer}`` is first asked about the leaf's seed examples: each
as written, and each with the ``answer`` of another seed (the next one whose answer differs). A
judge that can tell a good sample from a bad one scores the seeds as written above the swapped
ones; ``auc`` is the share of (as written, swapped) pairs it ranks that way, ties counted half,
so 0.5 is chance. Below ``generate.judge_check.min_auc`` the judge's verdicts on the leaf's
samples would be noise, and a filter on them would throw away good samples at random: the
block passes the leaf's rows unjudged instead, and the records, the stats and the log say so.
Measured with the embedded 270M teacher on 20 real skill leaves (benchmarks/real_leaf_yield.py),
its pair judge's AUC was 0.04-0.84, median 0.58, and below 0.75 on 17 of them (README:
"Measured").

Each check item is shown few-shot examples from the other seeds only (never the seed it asks
about, nor the one whose answer it borrows), so the judge cannot pass by recognising a shot.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from labmake.core.hashing import derive_seed

AS_WRITTEN, SWAPPED = "own", "swap"


@dataclass(frozen=True)
class CheckItem:
    row_id: str  # "check.{seed}.{own|swap}": the request's seed derives from it
    kind: str  # AS_WRITTEN or SWAPPED
    values: dict[str, Any]  # the seed's fields (the swapped column from another seed), examples


@dataclass(frozen=True)
class JudgeCheck:
    """One judge block's check on one leaf."""

    auc: float | None  # None: the leaf has no two seeds to swap, so there was no check
    pairs: int  # (as written, swapped) pairs compared
    min_auc: float

    @property
    def used(self) -> bool:
        return self.auc is None or self.auc >= self.min_auc

    def summary(self) -> dict[str, Any]:
        """What records and stats keep of it."""
        auc = None if self.auc is None else round(self.auc, 3)
        return {"auc": auc, "pairs": self.pairs, "min_auc": self.min_auc, "used": self.used}

    def describe(self, block: str) -> str:
        if self.auc is None:
            return f"{block}: not checked (no two seeds with different answers to swap); used"
        verdict = "used" if self.used else "NOT used: its samples pass unjudged"
        return (
            f"{block}: ranked the seeds as written above swapped ones in {self.auc:.0%} of "
            f"{self.pairs} pairs (generate.judge_check.min_auc: {self.min_auc:.0%}); {verdict}"
        )


def items(
    examples: list[dict[str, Any]],
    swap: str,
    shots: int,
    seed: int,
    leaf: str,
    block: str,
) -> list[CheckItem]:
    """Each seed as written and with the next differing seed's ``swap`` value; none when no two
    seeds differ in it."""
    out: list[CheckItem] = []
    n = len(examples)
    for i, example in enumerate(examples):
        j = next(
            (
                (i + k) % n
                for k in range(1, n)
                if str(examples[(i + k) % n].get(swap) or "").strip()
                != str(example.get(swap) or "").strip()
            ),
            None,
        )
        if j is None:
            continue
        others = [e for k, e in enumerate(examples) if k not in (i, j)]
        random.Random(derive_seed(seed, leaf, block, f"check.{i}")).shuffle(others)
        fields = {f: example.get(f) or "" for f in ("context", "question", "answer")}
        fields["examples"] = others[:shots]
        out.append(CheckItem(f"check.{i}.{AS_WRITTEN}", AS_WRITTEN, fields))
        swapped = {**fields, swap: examples[j].get(swap) or ""}
        out.append(CheckItem(f"check.{i}.{SWAPPED}", SWAPPED, swapped))
    return out


def auc(own: list[float | None], swapped: list[float | None]) -> float:
    """The share of (own, swapped) pairs where own scores higher; ties half, no verdict lowest."""
    low = float("-inf")
    pairs = [
        (a if a is not None else low, b if b is not None else low) for a in own for b in swapped
    ]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
