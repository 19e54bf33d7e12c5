"""A checked judge is asked about the leaf's own seeds first; one that cannot tell them from
swapped seeds judges none of the leaf's samples, and the records, stats and plan say so."""

from __future__ import annotations

import random
import re

import pytest
from test_rounds import SEEDS

from labmake.core.config import (
    FilterConfig,
    FreeformCounts,
    GenerateConfig,
    JudgeCheckConfig,
    TeacherConfig,
)
from labmake.sdg import filters, generation, judge_check, load
from labmake.sdg.blocks import make
from labmake.sdg.blocks.base import PipelineError
from labmake.teacher.cache import RequestCache
from labmake.teacher.protocol import Completion, Request

N_SEEDS = len(SEEDS["seed_examples"])
FILTER = FilterConfig()


def _last(prompt: str, tag: str) -> str:
    found = re.findall(f"<{tag}>(.*?)</{tag}>", prompt, flags=re.S)
    return found[-1] if found else ""


class JudgingTeacher:
    """Writes distinct animal facts; its pair judge is ``able`` (5 when the answer names the
    question's animal, else 1) or not (always 4: it cannot tell)."""

    identity = "judging-for-tests"
    n_ctx = 100_000

    def __init__(self, able: bool) -> None:
        self.able = able
        self.sent: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        self.sent.append(request)
        if request.prompt.endswith("Score:"):
            if not self.able:
                return Completion(" 4", True)
            animal = _last(request.prompt, "question").rstrip(".").split()[-1]
            return Completion(" 5" if animal in _last(request.prompt, "answer") else " 1", True)
        if request.prompt.endswith("Verdict:"):
            return Completion(" safe", True)
        n = random.Random(request.seed).randrange(10**6)
        return Completion(
            f"Tell me one fact about the fox {n}.</question>\n<answer>The fox {n} is quick.", True
        )

    def judged(self) -> int:
        """Requests that judged a generated sample (not a seed)."""
        return sum(
            r.prompt.endswith("Score:") and "fox" in _last(r.prompt, "question") for r in self.sent
        )

    def close(self) -> None:
        pass


def _gen(min_auc: float = 0.75) -> GenerateConfig:
    counts = FreeformCounts(questions=4, pairs_per_request=1, min_kept=0, max_requests=100)
    return GenerateConfig(freeform=counts, judge_check=JudgeCheckConfig(min_auc=min_auc))


def _run(gen, teacher, cache=None):
    return generation.generate_leaf(SEEDS, gen, TeacherConfig(), 7, teacher, cache, FILTER)


def test_check_items_swap_the_answer_and_never_show_the_seeds_they_ask_about():
    examples = SEEDS["seed_examples"]
    made = judge_check.items(examples, "answer", 3, 7, "leaf", "judge_pair")
    assert len(made) == 2 * len(examples)
    for own, swapped in zip(made[::2], made[1::2], strict=True):
        assert (own.kind, swapped.kind) == (judge_check.AS_WRITTEN, judge_check.SWAPPED)
        assert own.values["question"] == swapped.values["question"]
        seed = next(e for e in examples if e["question"] == own.values["question"])
        donor = next(e for e in examples if e["answer"] == swapped.values["answer"])
        assert own.values["answer"] == seed["answer"] and donor is not seed
        assert len(own.values["examples"]) == 3
        assert seed not in own.values["examples"] and donor not in own.values["examples"]
    # Seeds that all share one answer have nothing to swap: no check.
    same = [{**e, "answer": "Yes."} for e in examples]
    assert judge_check.items(same, "answer", 3, 7, "leaf", "judge_pair") == []
    # The draw of shots is seeded: the same every time.
    assert made == judge_check.items(examples, "answer", 3, 7, "leaf", "judge_pair")


def test_auc_counts_ties_half_and_no_verdict_lowest():
    assert judge_check.auc([5, 5], [1, 1]) == 1.0
    assert judge_check.auc([4, 4], [4, 4]) == 0.5
    assert judge_check.auc([1], [5]) == 0.0
    assert judge_check.auc([3], [None]) == 1.0
    assert judge_check.auc([None], [None]) == 0.5


def test_a_judge_that_cannot_tell_judges_nothing_and_every_sample_passes_unjudged():
    teacher = JudgingTeacher(able=False)
    records = _run(_gen(), teacher)
    assert teacher.judged() == 0  # no request judged a generated sample
    checks = [r for r in teacher.sent if r.prompt.endswith("Score:")]
    assert len(checks) == 2 * N_SEEDS  # only the seed check was asked
    kept = [r for r in records if r["status"] == "kept"]
    assert len(kept) == 4
    for record in kept:
        assert record["scores"]["pair_score"] is None
        assert record["verdicts"]["pair_score"] == "unjudged"
        check = record["judge_checks"]["judge_pair"]
        assert check == {"auc": 0.5, "pairs": 25, "min_auc": 0.75, "used": False}
    _, stats = filters.filter_leaf(SEEDS, records, FILTER)
    assert stats["judge_checks"]["judge_pair"]["used"] is False


def test_a_judge_that_can_tell_judges_every_sample():
    teacher = JudgingTeacher(able=True)
    records = _run(_gen(), teacher)
    assert teacher.judged() == 4
    # The fox answers name the fox: all pass; the check's verdict is kept with them.
    kept = [r for r in records if r["status"] == "kept"]
    assert [r["scores"]["pair_score"] for r in kept] == [5.0] * 4
    assert kept[0]["judge_checks"]["judge_pair"]["auc"] == 1.0
    assert kept[0]["judge_checks"]["judge_pair"]["used"] is True


def test_min_auc_zero_asks_no_check_and_the_plan_prices_the_check():
    teacher = JudgingTeacher(able=False)
    records = _run(_gen(min_auc=0), teacher)
    assert len([r for r in teacher.sent if r.prompt.endswith("Score:")]) == 4
    assert all("judge_checks" not in r for r in records)
    with_check = generation.estimate(SEEDS, _gen(), TeacherConfig(), 7)
    without = generation.estimate(SEEDS, _gen(min_auc=0), TeacherConfig(), 7)
    assert len(with_check) - len(without) == 2 * N_SEEDS


def test_the_check_is_asked_once_per_leaf_across_rounds_and_cached(tmp_path):
    counts = FreeformCounts(questions=2, pairs_per_request=1, min_kept=8, max_requests=100)
    gen = GenerateConfig(freeform=counts)
    teacher = JudgingTeacher(able=False)
    records = _run(gen, teacher, RequestCache(tmp_path))
    assert len({r["round"] for r in records}) > 1
    checks = [r for r in teacher.sent if "fox" not in _last(r.prompt, "question")]
    assert len([r for r in checks if r.prompt.endswith("Score:")]) == 2 * N_SEEDS
    again = JudgingTeacher(able=False)
    assert _run(gen, again, RequestCache(tmp_path)) == records
    assert again.sent == []


@pytest.mark.parametrize(
    "check", [{"swap": "wrong"}, {"swap": "answer", "more": 1}, "answer", {"field": "answer"}]
)
def test_a_wrong_check_spec_is_refused_with_its_form(check):
    spec = {"name": "j", "type": "judge", "template": "judge_pair.j2", "output": "s"}
    with pytest.raises(PipelineError, match="check is"):
        make({**spec, "scale": [1, 5], "check": check}, "here")


def test_the_shipped_skill_pipelines_check_their_pair_judge():
    for name in ("freeform", "grounded"):
        judge = next(b for b in load(name).blocks if b.name == "judge_pair")
        assert judge.spec["check"] == {"swap": "answer"}
