"""generate -> filter -> mix with the fake teacher: the datasets a build trains on."""

from __future__ import annotations

import random

import pytest

from labmake import generate, mix
from labmake.config import (
    FilterConfig,
    FreeformCounts,
    GenerateConfig,
    KnowledgeCounts,
    MixConfig,
    MixRecipe,
    TeacherConfig,
)
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
        "Later lighthouses used oil lamps, then electric lights and glass lenses.",
        "Keepers lived inside the towers and kept the lamps burning through storms.",
        "Modern lighthouses run on their own and send radio signals to ships.",
        "Some old towers became museums that visitors climb in the summer.",
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
GEN = GenerateConfig(
    knowledge=KnowledgeCounts(samples_per_chunk=3), freeform=FreeformCounts(questions=12)
)


@pytest.fixture(scope="module")
def accepted() -> dict[str, list[dict]]:
    out = {}
    for seeds in (KNOWLEDGE, SKILL):
        records = generate.generate_leaf(
            seeds, GEN, TeacherConfig(), 5, FakeTeacher(TeacherConfig())
        )
        kept, stats = filter_leaf(seeds, records, FilterConfig(min_chunk_overlap=0.0))
        assert kept, stats
        out[seeds["leaf"]] = kept
    return out


def _mix(accepted, cfg=None, order=(KNOWLEDGE, SKILL)):
    cfg = cfg or MixConfig(eval_seeds_per_leaf=2)
    return mix.mix([(s, accepted[s["leaf"]]) for s in order], cfg, 5)


def test_mix_covers_every_leaf_holds_out_eval_and_is_order_independent(accepted, tmp_path):
    datasets, stats = _mix(accepted)
    assert stats["sizes"]["eval"] == 4
    eval_questions = {r["question"] for r in datasets["eval"]}
    trained = {r["question"] for name in ("knowledge", "skills") for r in datasets[name]}
    assert not eval_questions & trained  # held-out items are never trained on
    assert {r["leaf"] for r in datasets["knowledge"]} == {KNOWLEDGE["leaf"]}
    assert {r["leaf"] for r in datasets["skills"]} == {SKILL["leaf"]}
    n_knowledge = len(accepted[KNOWLEDGE["leaf"]])
    # 13 closed-book seeds, and each generated sample in both default forms.
    assert len(datasets["knowledge"]) == 13 + 2 * n_knowledge
    for records in datasets.values():
        for r in records:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    again, _ = _mix(accepted, order=(SKILL, KNOWLEDGE))
    assert again == datasets
    # What the train stage reads: datasets' json loader, straight from the file.
    from datasets import load_dataset

    from labmake import io

    io.write_jsonl(tmp_path / "knowledge.jsonl", datasets["knowledge"])
    loaded = load_dataset("json", data_files=str(tmp_path / "knowledge.jsonl"), split="train")
    assert loaded.num_rows == len(datasets["knowledge"]) and "messages" in loaded.column_names


def test_knowledge_forms(accepted):
    cfg = MixConfig(knowledge_forms=("closed_book", "document", "distractors"), distractors=2)
    datasets, _ = _mix(accepted, cfg)
    generated = [r for r in datasets["knowledge"] if r["source"] == "generated"]
    by_form: dict[str, list[dict]] = {}
    for r in generated:
        by_form.setdefault(r["form"], []).append(r)
    assert {f: len(v) for f, v in by_form.items()} == dict.fromkeys(
        ("closed_book", "document", "distractors"), len(accepted[KNOWLEDGE["leaf"]])
    )
    for r in by_form["closed_book"]:
        assert r["messages"][0]["content"] == r["question"]
    for r in by_form["document"]:
        assert r["messages"][0]["content"] == f"{r['chunk']}\n\n{r['question']}"
    for r in by_form["distractors"]:
        user = r["messages"][0]["content"]
        shown = [c for c in KNOWLEDGE["chunks"] if c in user]
        assert r["chunk"] in shown and len(shown) == 3 and user.endswith(r["question"])
        assert user.count("Document ") == 3


def test_recipes_sample_exactly_and_upsample_only_when_asked(accepted):
    n = len(accepted[SKILL["leaf"]])
    assert n >= 3
    smaller = MixConfig(recipes=(MixRecipe(leaves="compositional_skills/*", size=2),))
    datasets, stats = _mix(accepted, smaller)
    drawn = [r for r in datasets["skills"] if r["source"] == "generated"]
    assert len(drawn) == 2 and len({r["id"] for r in drawn}) == 2  # without replacement
    assert stats["leaves"][SKILL["leaf"]]["recipe"] == "compositional_skills/*"
    # The knowledge leaf matched no recipe: all of its samples.
    assert stats["leaves"][KNOWLEDGE["leaf"]]["generated_drawn"] == len(accepted[KNOWLEDGE["leaf"]])
    bigger = MixRecipe(leaves="compositional_skills/**", size=n + 5)
    _, stats = _mix(accepted, MixConfig(recipes=(bigger,)))
    assert stats["leaves"][SKILL["leaf"]]["generated_drawn"] == n  # no upsampling unless asked
    up = MixRecipe(leaves="compositional_skills/**", size=n + 5, upsample=True)
    first_wins = MixRecipe(leaves="*", size=1)
    datasets, stats = _mix(accepted, MixConfig(recipes=(up, first_wins)))
    assert stats["leaves"][SKILL["leaf"]]["generated_drawn"] == n + 5
    assert stats["leaves"][SKILL["leaf"]]["upsampled_repeats"] == 5
    assert stats["leaves"][KNOWLEDGE["leaf"]]["generated_drawn"] == 1


def test_draw_is_seeded():
    samples = [{"id": i} for i in range(10)]
    recipe = MixRecipe(leaves="*", size=4)
    a, _ = mix.draw(samples, recipe, random.Random(1))
    b, _ = mix.draw(samples, recipe, random.Random(1))
    assert a == b and len(a) == 4
