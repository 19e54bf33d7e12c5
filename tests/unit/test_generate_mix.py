import pytest

from labmake import generate, mix
from labmake.config import FilterConfig, GenerateConfig, MixConfig, TeacherConfig
from labmake.filters import filter_leaf
from labmake.testing.fake_teacher import FakeTeacher

KNOWLEDGE = {
    "leaf": "knowledge/test/lighthouses",
    "kind": "knowledge",
    "grounded": False,
    "task_description": "Lighthouses",
    "seed_examples": [
        {
            "question": f"Question {c}.{q} about towers?",
            "answer": f"Answer {c}.{q}.",
            "context": f"Context {c}.",
        }
        for c in range(5)
        for q in range(3)
    ],
    "chunks": [
        "The tower of Pharos held a fire that sailors saw from far away at night.",
        "Later lighthouses used oil lamps, then electric lights and lenses.",
    ],
}
SKILL = {
    "leaf": "compositional_skills/test/rhymes",
    "kind": "skill",
    "grounded": False,
    "task_description": "Give a word that rhymes.",
    "seed_examples": [
        {
            "question": f"Give a word that rhymes with {w}.",
            "answer": f"{w.upper()} rhymes.",
            "context": None,
        }
        for w in ("cat", "dog", "sun", "tree", "cake")
    ],
    "chunks": [],
}


def always(_prompt: str) -> bool:
    return True


def test_requests_are_deterministic_and_seeded_per_leaf_and_index():
    gen, teacher = GenerateConfig(requests_per_leaf=6), TeacherConfig()
    first, skipped = generate.plan_requests(KNOWLEDGE, gen, teacher, 1234, always)
    again, _ = generate.plan_requests(KNOWLEDGE, gen, teacher, 1234, always)
    other, _ = generate.plan_requests(KNOWLEDGE, gen, teacher, 99, always)
    assert skipped == 0 and len(first) == 6
    assert [p.request for p in first] == [p.request for p in again]
    assert [p.request.seed for p in first] != [p.request.seed for p in other]
    assert len({p.request.seed for p in first}) == 6
    # Each knowledge prompt grounds on a chunk of this leaf and ends where the teacher continues.
    for p in first:
        assert p.chunk in KNOWLEDGE["chunks"] and p.chunk in p.request.prompt
        assert p.request.prompt.endswith("Q:")
        assert (
            "Context 0." in p.request.prompt
            or "Context 1." in p.request.prompt
            or "Context" in p.request.prompt
        )


def test_skill_prompt_uses_the_leaf_examples():
    planned, _ = generate.plan_requests(
        SKILL,
        GenerateConfig(requests_per_leaf=2, examples_per_prompt=3),
        TeacherConfig(),
        1,
        always,
    )
    prompt = planned[0].request.prompt
    assert prompt.startswith("Task: Give a word that rhymes.")
    assert prompt.count("\nA: ") == 3 and prompt.endswith("Q:")


def test_prompts_that_do_not_fit_are_shortened_then_skipped():
    gen = GenerateConfig(requests_per_leaf=3, examples_per_prompt=5)
    planned, skipped = generate.plan_requests(
        SKILL, gen, TeacherConfig(), 1, lambda p: p.count("\nA: ") <= 2
    )
    assert skipped == 0 and all(p.request.prompt.count("\nA: ") == 2 for p in planned)
    planned, skipped = generate.plan_requests(SKILL, gen, TeacherConfig(), 1, lambda p: False)
    assert planned == [] and skipped == 3


def test_template_rendering_is_strict():
    with pytest.raises(Exception, match="task_description"):
        generate.render("skill_freeform", examples=[])


def test_fake_teacher_round_trip_through_filter_and_mix():
    teacher = FakeTeacher(TeacherConfig())
    results = {}
    for seeds in (KNOWLEDGE, SKILL):
        planned, _ = generate.plan_requests(
            seeds, GenerateConfig(requests_per_leaf=4), TeacherConfig(), 5, always
        )
        records = generate.records(seeds, planned, teacher)
        assert [r["index"] for r in records] == [0, 1, 2, 3]
        assert all(r["teacher"] == "fake-for-tests:v1" and r["prompt_sha256"] for r in records)
        kept, stats = filter_leaf(seeds, records, FilterConfig(min_chunk_overlap=0.0))
        assert (
            kept and stats["removed"]["malformed"] >= 4 and stats["removed"]["exact_duplicate"] >= 1
        )
        results[seeds["leaf"]] = kept
    datasets, stats = mix.mix(
        [(KNOWLEDGE, results[KNOWLEDGE["leaf"]]), (SKILL, results[SKILL["leaf"]])],
        MixConfig(eval_seeds_per_leaf=2),
        5,
    )
    assert stats["sizes"]["eval"] == 4
    eval_questions = {r["question"] for r in datasets["eval"]}
    trained = {r["question"] for name in ("knowledge", "skills") for r in datasets[name]}
    assert not eval_questions & trained  # held-out items are never trained on
    assert {r["leaf"] for r in datasets["knowledge"]} == {KNOWLEDGE["leaf"]}
    assert {r["leaf"] for r in datasets["skills"]} == {SKILL["leaf"]}
    assert len(datasets["knowledge"]) == 13 + len(results[KNOWLEDGE["leaf"]])
    for records in datasets.values():
        for r in records:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    again, _ = mix.mix(
        [(SKILL, results[SKILL["leaf"]]), (KNOWLEDGE, results[KNOWLEDGE["leaf"]])],
        MixConfig(eval_seeds_per_leaf=2),
        5,
    )
    assert again == datasets  # independent of leaf order
