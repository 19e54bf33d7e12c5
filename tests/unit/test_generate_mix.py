"""generate -> filter -> mix with the fake teacher: the datasets a build trains on."""

from __future__ import annotations

import random

import pytest

from labmake.core.config import (
    FilterConfig,
    FreeformCounts,
    GenerateConfig,
    KnowledgeCounts,
    MixConfig,
    MixRecipe,
    NearDuplicateConfig,
    TeacherConfig,
)
from labmake.core.text import rouge_l, tokens
from labmake.sdg import generation, mix
from labmake.sdg.filters import filter_leaf, to_messages
from labmake.testing.fake_teacher import FakeTeacher


def _cfg(**values) -> MixConfig:
    # Most tests use leaves of a few samples: let them hold out up to half (the most allowed).
    return MixConfig(**{"eval_generated_max_share": 0.5, **values})


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
        records = generation.generate_leaf(
            seeds, GEN, TeacherConfig(), 5, FakeTeacher(TeacherConfig())
        )
        kept, stats = filter_leaf(seeds, records, FilterConfig(min_chunk_overlap=0.0))
        assert kept, stats
        out[seeds["leaf"]] = kept
    return out


def _mix(accepted, cfg=None, order=(KNOWLEDGE, SKILL)):
    cfg = cfg or _cfg(eval_seeds_per_leaf=2)
    return mix.mix([(s, accepted[s["leaf"]]) for s in order], cfg, 5)


def test_mix_covers_every_leaf_holds_out_eval_and_is_order_independent(accepted, tmp_path):
    datasets, stats = _mix(accepted)
    per_leaf = stats["leaves"]
    # The knowledge leaf's 15 seeds: a third of them (eval_seeds_share) is more than 2.
    for leaf, seeds_held in ((KNOWLEDGE["leaf"], 5), (SKILL["leaf"], 2)):
        s = per_leaf[leaf]
        assert s["eval_seed"] == seeds_held and s["eval_generated"] >= 1
        assert s["eval"] == s["eval_seed"] + s["eval_generated"]
        assert s["generated_drawn"] == (
            s["generated_available"] - s["eval_generated"] - s["generated_dropped_near_eval"]
        )
    assert stats["sizes"]["eval"] == sum(s["eval"] for s in per_leaf.values())
    eval_questions = {r["question"] for r in datasets["eval"]}
    trained = {r["question"] for name in ("knowledge", "skills") for r in datasets[name]}
    assert not eval_questions & trained  # held-out items are never trained on
    assert {r["leaf"] for r in datasets["knowledge"]} == {KNOWLEDGE["leaf"]}
    assert {r["leaf"] for r in datasets["skills"]} == {SKILL["leaf"]}
    n_knowledge = per_leaf[KNOWLEDGE["leaf"]]["generated_drawn"]
    # 10 closed-book seeds (15, 5 held out), and each generated training sample in both forms.
    assert len(datasets["knowledge"]) == 10 + 2 * n_knowledge
    for records in datasets.values():
        for r in records:
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    again, _ = _mix(accepted, order=(SKILL, KNOWLEDGE))
    assert again == datasets
    # What the train stage reads: datasets' json loader, straight from the file.
    from datasets import load_dataset

    from labmake.core import artifacts

    artifacts.write_jsonl(tmp_path / "knowledge.jsonl", datasets["knowledge"])
    loaded = load_dataset("json", data_files=str(tmp_path / "knowledge.jsonl"), split="train")
    assert loaded.num_rows == len(datasets["knowledge"]) and "messages" in loaded.column_names


def test_knowledge_forms(accepted):
    cfg = _cfg(
        eval_generated_per_leaf=0,
        knowledge_forms=("closed_book", "document", "distractors"),
        distractors=2,
    )
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
    # No generated hold-out here: the recipes then see every accepted sample.
    smaller = _cfg(
        eval_generated_per_leaf=0, recipes=(MixRecipe(leaves="compositional_skills/*", size=2),)
    )
    datasets, stats = _mix(accepted, smaller)
    drawn = [r for r in datasets["skills"] if r["source"] == "generated"]
    assert len(drawn) == 2 and len({r["id"] for r in drawn}) == 2  # without replacement
    assert stats["leaves"][SKILL["leaf"]]["recipe"] == "compositional_skills/*"
    # The knowledge leaf matched no recipe: all of its samples.
    assert stats["leaves"][KNOWLEDGE["leaf"]]["generated_drawn"] == len(accepted[KNOWLEDGE["leaf"]])
    bigger = MixRecipe(leaves="compositional_skills/**", size=n + 5)
    _, stats = _mix(accepted, _cfg(eval_generated_per_leaf=0, recipes=(bigger,)))
    assert stats["leaves"][SKILL["leaf"]]["generated_drawn"] == n  # no upsampling unless asked
    up = MixRecipe(leaves="compositional_skills/**", size=n + 5, upsample=True)
    first_wins = MixRecipe(leaves="*", size=1)
    datasets, stats = _mix(accepted, _cfg(eval_generated_per_leaf=0, recipes=(up, first_wins)))
    assert stats["leaves"][SKILL["leaf"]]["generated_drawn"] == n + 5
    assert stats["leaves"][SKILL["leaf"]]["upsampled_repeats"] == 5
    assert stats["leaves"][KNOWLEDGE["leaf"]]["generated_drawn"] == 1


def test_draw_is_seeded():
    samples = [{"id": i} for i in range(10)]
    recipe = MixRecipe(leaves="*", size=4)
    a, _ = mix.draw(samples, recipe, random.Random(1))
    b, _ = mix.draw(samples, recipe, random.Random(1))
    assert a == b and len(a) == 4


# --- held-out generated samples -----------------------------------------------------------

EVAL_FIELDS = {"leaf", "kind", "source", "form", "question", "answer", "context", "messages"}


def _leaf(
    name: str, kind: str, seed_questions: list[str], samples: list[tuple[str, str, str | None]]
) -> tuple[dict, list[dict]]:
    """A leaf's seeds and accepted samples as mix reads them; samples: (question, answer, ctx)."""
    chunk = "The keeper lit the lamp of the tower every night for forty years."
    seeds = {
        "leaf": name,
        "kind": kind,
        "seed_examples": [
            {"question": q, "answer": f"Seed answer {i}.", "context": None}
            for i, q in enumerate(seed_questions)
        ],
        "chunks": [chunk] if kind == "knowledge" else [],
    }
    accepted = []
    for i, (question, answer, context) in enumerate(samples):
        sample = {"leaf": name, "kind": kind, "source": "generated", "id": f"{name}#{i}"}
        sample.update(question=question, answer=answer, context=context)
        if kind == "knowledge":
            sample.update(chunk=chunk, chunk_index=0)
        sample["messages"] = to_messages(question, answer, context)
        accepted.append(sample)
    return seeds, accepted


DISTINCT = [
    "Who lit the lamp of the tower?",
    "How many years did the keeper serve there?",
    "When was the lamp lit each day?",
    "What fuel burned in the old lamp?",
    "Which ships passed the rocky point?",
]


def test_held_out_generated_samples_are_never_trained_on(accepted):
    # Every form and upsampled repeats: a held-out sample must appear in none of them.
    up = MixRecipe(leaves="*", size=30, upsample=True)
    cfg = _cfg(
        eval_seeds_per_leaf=2,
        eval_generated_per_leaf=4,
        knowledge_forms=("closed_book", "document", "distractors"),
        distractors=2,
        recipes=(up,),
    )
    datasets, stats = _mix(accepted, cfg)
    held = [r for r in datasets["eval"] if r["source"] == "generated"]
    assert {r["leaf"] for r in held} == {KNOWLEDGE["leaf"], SKILL["leaf"]}
    training = datasets["knowledge"] + datasets["skills"]
    trained_pairs = {(r["question"], r["answer"]) for r in training}
    prompts = [r["messages"][0]["content"] for r in training]
    by_id = {s["id"]: s for samples in accepted.values() for s in samples}
    originals = {(s["question"], s["answer"]): s for s in by_id.values()}
    for item in held:
        assert (item["question"], item["answer"]) not in trained_pairs
        assert not [p for p in prompts if item["question"] in p]
        source = originals[(item["question"], item["answer"])]
        if item["kind"] == "knowledge":  # closed-book, like the seeds
            assert set(item) == EVAL_FIELDS | {"chunk_index"}
            assert item["form"] == "closed_book" and item["context"] is None
            assert item["chunk_index"] == source["chunk_index"]
            assert item["messages"][0]["content"] == item["question"]
        else:  # a skill keeps its context
            assert set(item) == EVAL_FIELDS and item["form"] == "skill"
            assert item["context"] == source["context"]
            assert item["messages"] == source["messages"]
    for leaf, s in stats["leaves"].items():
        assert s["eval_generated"] == sum(r["leaf"] == leaf for r in held)
        assert s["generated_drawn"] == 30 and s["generated_records"] > 0


def test_held_out_choice_is_seeded_and_stable(accepted):
    cfg = _cfg(eval_generated_per_leaf=2)
    base, _ = _mix(accepted, cfg)
    again, _ = _mix(accepted, cfg)
    assert again == base
    # The leaf's own order and a sample added to ANOTHER leaf change nothing for this leaf.
    shuffled = {leaf: samples[::-1] for leaf, samples in accepted.items()}
    extra = dict(shuffled)
    extra[SKILL["leaf"]] = [
        *shuffled[SKILL["leaf"]],
        {**shuffled[SKILL["leaf"]][0], "question": "Give a word that rhymes with moon, please."},
    ]
    changed, _ = _mix(extra, cfg)

    def held(datasets, leaf):
        return sorted(r["question"] for r in datasets["eval"] if r["leaf"] == leaf)

    assert held(changed, KNOWLEDGE["leaf"]) == held(base, KNOWLEDGE["leaf"])
    reordered, _ = _mix(shuffled, cfg)
    assert held(reordered, SKILL["leaf"]) == held(base, SKILL["leaf"])
    # Another build seed picks other samples (the choice is seeded, not positional).
    picks = {
        tuple(
            held(mix.mix([(KNOWLEDGE, accepted[KNOWLEDGE["leaf"]])], cfg, s)[0], KNOWLEDGE["leaf"])
        )
        for s in range(8)
    }
    assert len(picks) > 1


def test_a_leaf_keeps_at_least_one_generated_training_sample(caplog):
    # Four samples asking one question: holding any out would drop the other three as its
    # near-duplicates and leave the leaf nothing to train on, so none is held out, loudly.
    same = "Who lit the lamp of the tower?"
    seeds, samples = _leaf(
        "knowledge/test/keeper",
        "knowledge",
        ["Seed question about the keeper?"],
        [(same, f"Answer {i}.", None) for i in range(4)],
    )
    cfg = _cfg(eval_seeds_per_leaf=0, eval_generated_per_leaf=10)
    with caplog.at_level("WARNING", logger="labmake.sdg.mix"):
        datasets, stats = mix.mix([(seeds, samples)], cfg, 5)
    s = stats["leaves"]["knowledge/test/keeper"]
    assert (s["eval_generated"], s["generated_drawn"], s["eval"]) == (0, 4, 0)
    assert "knowledge/test/keeper" in caplog.text and "held out 0 of the 2" in caplog.text


def test_a_small_leaf_holds_out_at_most_its_share(caplog):
    seeds, samples = _leaf(
        "knowledge/test/keeper",
        "knowledge",
        ["Seed question about the keeper?"],
        [(q, f"Answer {i}.", None) for i, q in enumerate(DISTINCT)],
    )
    for share, held in ((0.25, 1), (0.5, 2)):  # of 5 samples
        cfg = MixConfig(eval_generated_per_leaf=4, eval_generated_max_share=share)
        with caplog.at_level("WARNING", logger="labmake.sdg.mix"):
            _, stats = mix.mix([(seeds, samples)], cfg, 5)
        s = stats["leaves"]["knowledge/test/keeper"]
        assert s["eval_generated"] == held
        assert s["generated_drawn"] + s["generated_dropped_near_eval"] == 5 - held
    assert not caplog.text  # the share is a limit, not a shortfall: nothing to warn about


def _near(a: str, b: str) -> bool:
    return rouge_l(tokens(a), tokens(b)) >= NearDuplicateConfig().threshold


def test_training_never_asks_a_held_out_question():
    same = "Who lit the lamp of the tower?"
    seed_question = "What did the keeper write in the logbook?"
    samples = [
        (same, "The keeper lit it.", None),
        (same, "A keeper named Ana lit it.", None),
        (same + " ", "The old keeper.", None),
        (seed_question, "He wrote the weather.", None),  # asks the held-out seed's question
        *[(q, f"Answer {i}.", None) for i, q in enumerate(DISTINCT[1:])],
    ]
    seeds, accepted = _leaf("knowledge/test/keeper", "knowledge", [seed_question], samples)
    dropped_near_generated = 0
    for build_seed in range(8):
        cfg = _cfg(eval_seeds_per_leaf=1, eval_generated_per_leaf=2)
        datasets, stats = mix.mix([(seeds, accepted)], cfg, build_seed)
        s = stats["leaves"]["knowledge/test/keeper"]
        held = [r["question"] for r in datasets["eval"]]
        trained = [r["question"] for r in datasets["knowledge"]]
        assert seed_question in held and s["eval_generated"] == 2
        assert not [(t, h) for t in trained for h in held if _near(t, h)]
        assert s["generated_drawn"] + s["eval_generated"] + s["generated_dropped_near_eval"] == 8
        dropped_near_generated += s["generated_dropped_near_eval"] - 1  # 1: the seed's copy
    assert dropped_near_generated > 0  # some seed held out one of the three alike questions


def test_a_question_a_training_seed_asks_is_never_held_out():
    seed_question = "What did the keeper write in the logbook?"
    samples = [(seed_question, "The weather.", None), *[(q, "An answer.", None) for q in DISTINCT]]
    seeds, accepted = _leaf("knowledge/test/keeper", "knowledge", [seed_question], samples)
    for build_seed in range(8):
        cfg = _cfg(eval_seeds_per_leaf=0, eval_generated_per_leaf=3)
        datasets, stats = mix.mix([(seeds, accepted)], cfg, build_seed)
        assert seed_question not in {r["question"] for r in datasets["eval"]}
        assert stats["leaves"]["knowledge/test/keeper"]["eval_generated"] == 3


def test_grounded_skills_compare_the_question_in_its_context():
    instruction = "List the action items in these notes."
    contexts = [
        "Ana will paint the fence by Monday and Bo buys nails.",
        "Kofi books the hall for the spring fair on the third of May.",
        "Lena sends the budget to the board before Friday noon.",
        "Omar fixes the login bug; Rita writes the release notes.",
        "The choir meets Tuesday; Sam prints the songbooks for everyone.",
    ]
    samples = [(instruction, f"- Item {i}", c) for i, c in enumerate(contexts)]
    seeds, accepted = _leaf("compositional_skills/test/notes", "skill", [], samples)
    cfg = _cfg(eval_seeds_per_leaf=0, eval_generated_per_leaf=2)
    datasets, stats = mix.mix([(seeds, accepted)], cfg, 5)
    s = stats["leaves"]["compositional_skills/test/notes"]
    # One instruction, other notes: other tasks, so nothing is dropped.
    assert (s["eval_generated"], s["generated_dropped_near_eval"], s["generated_drawn"]) == (
        2,
        0,
        3,
    )
    for item in datasets["eval"]:
        assert item["context"] in contexts
        assert item["messages"][0]["content"] == f"{item['context']}\n\n{instruction}"
    # The same notes asked again (another answer) is the same task: never both sides.
    again = [*samples, *[(instruction, "- Other items", c) for c in contexts]]
    seeds, accepted = _leaf("compositional_skills/test/notes", "skill", [], again)
    datasets, stats = mix.mix([(seeds, accepted)], cfg, 5)
    held = {r["context"] for r in datasets["eval"]}
    assert len(held) == 2 and not held & {r["context"] for r in datasets["skills"]}
    assert stats["leaves"]["compositional_skills/test/notes"]["generated_dropped_near_eval"] == 2


def test_evaluation_reads_generated_items(accepted, tmp_path):
    from labmake.core import artifacts
    from labmake.core.config import EvaluateConfig
    from labmake.evaluation.results import read_items
    from labmake.evaluation.summary import summarize

    datasets, stats = _mix(accepted)
    path = tmp_path / "eval.jsonl"
    artifacts.write_jsonl(path, datasets["eval"])
    items = read_items(path)
    n = len(items)
    results = {
        "base": {"model": "base", "reference_nll": [3.0] * n},
        "tuned": {"model": "tuned", "reference_nll": [2.0 + 0.1 * (i % 3) for i in range(n)]},
    }
    report = summarize(items, results, EvaluateConfig(bootstrap_resamples=50), 5)
    for leaf, s in stats["leaves"].items():
        assert report["leaves"][leaf]["n"] == s["eval"] > s["eval_seed"]
        assert report["leaves"][leaf]["reference_nll"]["models"]["tuned"]["n"] == s["eval"]
    assert {x["question"] for x in report["samples"]} >= {
        r["question"] for r in items if r["source"] == "generated"
    }


def test_seeds_held_out_are_the_larger_of_the_count_and_the_share():
    cases = ((15, 2, 0.34, 5), (5, 2, 0.34, 2), (9, 2, 0.34, 3), (15, 2, 0.0, 2))
    for n, count, share, held in cases:
        seeds = {**KNOWLEDGE, "seed_examples": KNOWLEDGE["seed_examples"][:n]}
        cfg = MixConfig(eval_seeds_per_leaf=count, eval_seeds_share=share)
        out, kept = mix.split_seeds(seeds, cfg, 5)
        assert (len(out), len(kept)) == (held, n - held)
        again, _ = mix.split_seeds(seeds, cfg, 5)
        assert again == out  # a stable, seeded choice
