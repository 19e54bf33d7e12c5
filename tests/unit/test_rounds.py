"""The yield floor: seeded rounds until a leaf has min_kept accepted samples or would pass
max_requests; deterministic, answered from the cache on a re-run, resumable after a crash."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from labmake.core.config import (
    FilterConfig,
    FreeformCounts,
    GenerateConfig,
    JudgeCheckConfig,
    TeacherConfig,
)
from labmake.sdg import SHIPPED, filters, generation, load
from labmake.sdg.rounds import MIN_ROUND_ROWS, next_size
from labmake.teacher.cache import RequestCache
from labmake.teacher.protocol import Completion, Request

SEEDS = {
    "leaf": "compositional_skills/test/facts",
    "kind": "skill",
    "grounded": False,
    "task_description": "State a fact about an animal.",
    "seed_examples": [
        {"question": f"Tell me one fact about the {a}.", "answer": f"The {a} {f}.", "context": None}
        for a, f in (
            ("owl", "hunts at night"),
            ("bee", "makes honey"),
            ("cat", "sleeps a lot"),
            ("cow", "eats grass"),
            ("eel", "lives in water"),
        )
    ],
    "chunks": [],
}
WORDS = "amber basil cedar delta ember fjord grove heron indigo juniper kelp lagoon maple".split()


class VariedTeacher:
    """Distinct questions and answers per request seed; judges pass ``pass_rate`` of samples."""

    identity = "varied-for-tests"
    n_ctx = 100_000

    def __init__(self, pass_rate: float = 1.0, fail_after: int | None = None) -> None:
        self.pass_rate, self.fail_after = pass_rate, fail_after
        self.sent: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise KeyboardInterrupt("killed")  # as a kill: nothing after this is answered
        self.sent.append(request)
        rng = random.Random(request.seed)
        words = " ".join(rng.sample(WORDS, 4))
        if request.prompt.endswith("Score:"):
            return Completion(" 5" if rng.random() < self.pass_rate else " 1", True)
        if request.prompt.endswith("Verdict:"):
            return Completion(" yes", True)
        answer = f"The {words} come in that order, {rng.randrange(10**6)}."
        if request.prompt.endswith("<question>"):
            return Completion(f"Which of {words} comes first?</question>\n<answer>{answer}", True)
        return Completion(answer, True)

    def close(self) -> None:
        pass


def _gen(questions: int, min_kept: int, max_requests: int) -> GenerateConfig:
    # One pair per request: the arithmetic below counts requests per sample.
    counts = FreeformCounts(
        questions=questions, pairs_per_request=1, min_kept=min_kept, max_requests=max_requests
    )
    # No judge check: these tests count a judged sample's requests (test_judge_check checks it).
    return GenerateConfig(freeform=counts, judge_check=JudgeCheckConfig(min_auc=0))


FILTER = FilterConfig()
# Teacher requests one sample costs when it passes every judge (question, its judge, answer,
# judges of the pair): the first round's worst case is that times the question count.
PER_SAMPLE = len(generation.estimate(SEEDS, _gen(1, 0, 1), TeacherConfig(), 7))


def _run(gen, teacher, cache=None):
    return generation.generate_leaf(SEEDS, gen, TeacherConfig(), 7, teacher, cache, FILTER)


def test_an_easy_leaf_stops_after_its_first_round():
    teacher = VariedTeacher()
    records = _run(_gen(6, 4, 500), teacher)
    assert {r["round"] for r in records} == {0}
    assert sorted(r["id"] for r in records) == [f"s{i}" for i in range(6)]
    assert len(teacher.sent) == 6 * PER_SAMPLE


def test_a_hard_leaf_gets_more_rounds_until_min_kept_with_new_rows():
    gen = _gen(6, 10, 400)
    teacher = VariedTeacher(pass_rate=0.35)
    records = _run(gen, teacher)
    rounds = sorted({r["round"] for r in records})
    assert len(rounds) > 1
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids))  # each round's rows are new samples...
    seeds = [s for r in records for s in r["seeds"].values()]
    assert len(seeds) == len(set(seeds))  # ...with their own seeds
    kept, stats = filters.filter_leaf(SEEDS, records, FILTER)
    assert len(kept) >= 10  # the filter stage counts what the rounds counted
    # A round past the first asks at least a batch of rows, and only what the floor needs.
    later = [r for r in records if r["round"] > 0]
    assert len({r["id"] for r in later}) >= MIN_ROUND_ROWS or len(rounds) == 1
    assert len(teacher.sent) <= 400


def test_max_requests_bounds_a_leaf_that_never_yields_and_the_plan_says_so():
    gen = _gen(6, 10, 100)
    teacher = VariedTeacher(pass_rate=0.0)
    records = _run(gen, teacher)
    assert 6 * PER_SAMPLE < len(teacher.sent) <= 100  # more rounds ran, none past the budget
    assert not [r for r in records if r["status"] == "kept"]
    planned = generation.request_bound(SEEDS, gen, TeacherConfig(), 7)
    assert len(planned.first) == 6 * PER_SAMPLE and planned.most == 100
    # Without a floor the bound is the first round.
    off = replace(gen, freeform=replace(gen.freeform, min_kept=0))
    assert generation.request_bound(SEEDS, off, TeacherConfig(), 7)[1] == 6 * PER_SAMPLE


def test_rounds_are_deterministic_and_a_rerun_is_answered_from_the_cache(tmp_path):
    gen = _gen(6, 10, 300)
    first = _run(gen, VariedTeacher(pass_rate=0.35), RequestCache(tmp_path))
    again_teacher = VariedTeacher(pass_rate=0.35)
    again = _run(gen, again_teacher, RequestCache(tmp_path))
    assert again == first and again_teacher.sent == []
    assert _run(gen, VariedTeacher(pass_rate=0.35)) == first  # and without a cache


def test_a_run_killed_in_a_later_round_resumes_to_the_same_records(tmp_path):
    gen = _gen(6, 10, 300)
    whole_teacher = VariedTeacher(pass_rate=0.35)
    whole = _run(gen, whole_teacher)
    total = len(whole_teacher.sent)
    killed_at = total - 7  # inside the last round
    with pytest.raises(KeyboardInterrupt):
        _run(gen, VariedTeacher(pass_rate=0.35, fail_after=killed_at), RequestCache(tmp_path))
    resumed_teacher = VariedTeacher(pass_rate=0.35)
    resumed = _run(gen, resumed_teacher, RequestCache(tmp_path))
    assert resumed == whole
    assert len(resumed_teacher.sent) == total - killed_at  # only what was never answered


def test_a_later_round_of_only_repeats_ends_the_rounds_and_a_rejected_one_does_not():
    class RepeatsItself(VariedTeacher):
        """Writes the same pair whatever the request's seed: after one, only repeats."""

        def complete(self, request: Request) -> Completion:
            if request.prompt.endswith("<question>"):
                self.sent.append(request)
                return Completion("Which bird calls at dusk?</question>\n<answer>The owl.", True)
            return super().complete(request)

    teacher = RepeatsItself()
    records = _run(_gen(6, 10, 400), teacher)  # a floor one distinct sample cannot reach
    assert {r["round"] for r in records} == {0, 1}  # the second round repeated: no third
    assert all(r["reason"] == "exact_duplicate" for r in records if r["round"] == 1)
    assert len(teacher.sent) < 400
    # New samples that the judges reject are no reason to stop: rounds go on to the budget.
    never = VariedTeacher(pass_rate=0.0)
    records = _run(_gen(6, 10, 400), never)
    assert len({r["round"] for r in records}) > 2


def test_round_sizes_follow_the_acceptance_so_far():
    # 3 of 12 accepted, 7 more needed: 12 / 3 * 7 * 1.25 = 35, at most the 12 done so far.
    assert next_size(3, 7, 12, 1) == 12
    assert next_size(6, 2, 12, 1) == MIN_ROUND_ROWS  # 5 -> a batch at least
    assert next_size(0, 10, 12, 1) == 12  # nothing accepted yet: as many as before
    assert next_size(3, 2, 40, 4) == 34  # per chunk: 4 rows a sample, 2 samples at least


@pytest.mark.parametrize("name", [n for n in SHIPPED])
def test_every_shipped_pipeline_has_a_yield_floor(name):
    pipeline = load(name)
    assert pipeline.rounds == {
        "min_kept": f"{name}.min_kept",
        "max_requests": f"{name}.max_requests",
    }
