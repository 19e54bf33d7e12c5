import pytest

from labmake.core import artifacts, text
from labmake.core.config import FilterConfig, NearDuplicateConfig
from labmake.sdg import filters
from labmake.sdg.parse import parse_items

SEEDS = {
    "leaf": "knowledge/test/lighthouses",
    "kind": "knowledge",
    "grounded": False,
    "seed_examples": [
        {"question": "What does a lighthouse warn ships about?", "answer": "Rocks.", "context": "c"}
    ],
    "chunks": [],
}
CHUNK = (
    "The first lighthouse of Alexandria stood on the island of Pharos. Its fire burned at the top "
    "of a tall stone tower and could be seen by sailors far out at sea."
)


def record(question, answer, i=0, status="kept", rejected_by=None, chunk=CHUNK):
    return {
        "leaf": SEEDS["leaf"],
        "kind": "knowledge",
        "id": f"c0.s{i}",
        "status": status,
        "rejected_by": rejected_by,
        "reason": None if status == "kept" else "below_threshold",
        "pipeline": "knowledge",
        "pipeline_version": 1,
        "teacher": "t",
        "seeds": {"generate_qa": 7},
        "templates": {"generate_qa": "ab" * 32},
        "scores": {"faithfulness": 1.0},
        "question": question,
        "answer": answer,
        "chunk": chunk,
        "chunk_index": 0,
    }


def test_rouge_l():
    assert text.rouge_l(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert text.rouge_l(["a", "b"], ["c", "d"]) == 0.0
    assert text.rouge_l(["a", "x", "b"], ["a", "b"]) == pytest.approx(0.8)


def test_parse_items_multiline_and_malformed():
    text = (
        "<question>one?</question><answer>line 1\nline 2</answer>\n---\n<question>two?</question>"
        "\n---\n<answer>orphan answer</answer><question>three?</question><answer>yes</answer>"
    )
    items, malformed = parse_items(text)
    assert [i["question"] for i in items] == ["one?", "three?"]
    assert items[0]["answer"] == "line 1\nline 2"
    assert malformed == 2  # a question without an answer, an answer without a question


def test_each_rule_removes_its_kind_of_bad_sample_and_stats_count_them():
    generated = [
        record("Where did the lighthouse of Alexandria stand?", "On the island of Pharos.", 0),
        record("Where did the lighthouse of Alexandria stand?", "On the island of Pharos!", 1),
        record("Who painted the Mona Lisa in Florence?", "Leonardo painted it in Florence.", 2),
        record("What does a lighthouse warn ships about?", "Rocks out at sea.", 3),
        record("Hi?", "The fire burned at the top.", 4),
        record("What burned at the top of the tower?", "As an AI, the fire burned at the top.", 5),
        record("What did sailors see?", "The fire.", 6, status="rejected", rejected_by="keep_x"),
    ]
    kept, stats = filters.filter_leaf(SEEDS, generated, FilterConfig())
    assert [k["question"] for k in kept] == ["Where did the lighthouse of Alexandria stand?"]
    assert kept[0]["messages"] == [
        {"role": "user", "content": "Where did the lighthouse of Alexandria stand?"},
        {"role": "assistant", "content": "On the island of Pharos."},
    ]
    # Provenance travels from the generated record.
    assert kept[0]["teacher"] == "t" and kept[0]["seeds"] == {"generate_qa": 7}
    assert kept[0]["pipeline"] == "knowledge" and kept[0]["scores"] == {"faithfulness": 1.0}
    assert stats["removed"] == {
        "exact_duplicate": 1,
        "not_grounded_in_chunk": 1,
        "copies_a_seed": 1,
        "question_length": 1,
        "blocklist": 1,
    }
    assert stats["removed_by_pipeline"] == {"keep_x": 1}
    assert stats["kept"] == 1 and stats["candidates"] == 6 and stats["generated"] == 7


def test_blocklist_is_configurable_and_checked():
    generated = [record("What stood on the island of Pharos?", "The lighthouse of Alexandria.")]
    kept, _ = filters.filter_leaf(SEEDS, generated, FilterConfig(blocklist=()))
    assert len(kept) == 1
    kept, stats = filters.filter_leaf(SEEDS, generated, FilterConfig(blocklist=("(?i)pharos",)))
    assert kept == [] and stats["removed"] == {"blocklist": 1}
    with pytest.raises(ValueError, match="filter.blocklist"):
        filters.filter_leaf(SEEDS, generated, FilterConfig(blocklist=("(unclosed",)))


def test_templated_questions_with_new_content_are_not_duplicates():
    a = record("Write about the tall stone tower.", "A fire burned at the top of the tower.", 0)
    b = record("Write about the island of Pharos.", "Sailors saw it from far out at sea.", 1)
    for method in ("rouge_l", "minhash"):
        cfg = FilterConfig(near_duplicate=NearDuplicateConfig(method=method, threshold=0.8))
        kept, stats = filters.filter_leaf(SEEDS, [a, b], cfg)
        assert len(kept) == 2, (method, stats)


@pytest.mark.parametrize(("method", "threshold"), [("rouge_l", 0.8), ("minhash", 0.5)])
def test_near_duplicates_are_removed(method, threshold):
    a = record("What burned at the top of the tall stone tower?", "A fire burned at the top.", 0)
    b = record(
        "What burned at the top of the tall stone tower then?", "A fire burned at the top.", 1
    )
    cfg = FilterConfig(near_duplicate=NearDuplicateConfig(method=method, threshold=threshold))
    kept, stats = filters.filter_leaf(SEEDS, [a, b], cfg)
    assert len(kept) == 1 and stats["removed"] == {"near_duplicate": 1}


def test_minhash_is_deterministic_and_tracks_overlap():
    words = text.tokens("the fire of pharos burned at the top of a tall stone tower by the sea")
    same = text.minhash(words).jaccard(text.minhash(list(words)))
    half = text.minhash(words).jaccard(text.minhash(words[:8] + ["x", "y", "z", "w"]))
    other = text.minhash(words).jaccard(text.minhash(text.tokens("cats sleep all day")))
    assert same == 1.0 and 0.1 < half < 0.6 and other < 0.1


def _empty_leaf(tmp_path):
    seeds_path, gen_path = tmp_path / "s.json", tmp_path / "g.jsonl"
    artifacts.write_json(seeds_path, SEEDS)
    artifacts.write_jsonl(
        gen_path,
        [
            record("Who?", "Nobody at all here.", 0),
            record("Who lit it?", "A keeper.", 1, status="rejected", rejected_by="keep_faithful"),
        ],
    )
    return seeds_path, gen_path


def test_an_empty_leaf_is_flagged_and_the_build_goes_on(tmp_path, caplog):
    seeds_path, gen_path = _empty_leaf(tmp_path)
    filters.run(seeds_path, gen_path, FilterConfig(), tmp_path / "f.jsonl", tmp_path / "st.json")
    assert artifacts.read_jsonl(tmp_path / "f.jsonl") == []  # an empty file, not a failure
    stats = artifacts.read_json(tmp_path / "st.json")
    assert stats["kept"] == 0 and stats["flagged"] is True
    assert "kept 0 of 1" in stats["hint"] and "min_kept" in stats["hint"]
    assert any("kept 0 of 1" in r.message for r in caplog.records if r.levelname == "WARNING")


def test_a_leaf_under_flag_below_is_flagged_and_keeps_its_samples(tmp_path):
    seeds_path, gen_path = tmp_path / "s.json", tmp_path / "g.jsonl"
    artifacts.write_json(seeds_path, SEEDS)
    artifacts.write_jsonl(
        gen_path, [record("Where did the lighthouse of Alexandria stand?", "On Pharos island.")]
    )
    out, stats_path = tmp_path / "f.jsonl", tmp_path / "st.json"
    filters.run(seeds_path, gen_path, FilterConfig(flag_below=2), out, stats_path)
    assert len(artifacts.read_jsonl(out)) == 1 and artifacts.read_json(stats_path)["flagged"]
    filters.run(seeds_path, gen_path, FilterConfig(flag_below=1), out, stats_path)
    assert artifacts.read_json(stats_path)["flagged"] is False
    assert "hint" not in artifacts.read_json(stats_path)


def test_on_empty_fail_keeps_the_strict_behaviour(tmp_path):
    seeds_path, gen_path = _empty_leaf(tmp_path)
    cfg = FilterConfig(on_empty="fail")
    with pytest.raises(filters.EmptyLeafError, match="kept 0 of 1") as err:
        filters.run(seeds_path, gen_path, cfg, tmp_path / "f.jsonl", tmp_path / "st.json")
    assert "teacher" in str(err.value) and "params.yaml" in str(err.value)
    assert "keep_faithful" in str(err.value) and "on_empty" in str(err.value)
    assert not (tmp_path / "f.jsonl").exists()
    stats = artifacts.read_json(tmp_path / "st.json")
    assert stats["kept"] == 0 and stats["removed_by_pipeline"] == {"keep_faithful": 1}


def test_length_bounds_widen_to_the_leafs_own_seeds():
    seeds = {
        **SEEDS,
        "seed_examples": [
            {"question": "Two?", "answer": " ".join(["word"] * 150), "context": None},
            {
                "question": "Why do lamps burn oil at night?",
                "answer": "Oil burns.",
                "context": None,
            },
        ],
    }
    long_answer = "The fire burned at the top of a tall stone tower. " * 14  # 154 words
    generated = [
        record("Pharos?", "The fire burned at the top of the tower.", 0),
        record("What burned at the top of the tower?", long_answer, 1),
        record("Where?", "It stood by the sea.", 2),
    ]
    kept, stats = filters.filter_leaf(seeds, generated, FilterConfig())
    # One-word questions are what this leaf asks; 150-word answers are too, 154 are not.
    assert [k["question"] for k in kept] == ["Pharos?", "Where?"]
    assert stats["removed"] == {"answer_length": 1}


def test_grounded_samples_sharing_a_long_context_are_not_near_duplicates():
    seeds = {**SEEDS, "leaf": "compositional_skills/test/notes", "kind": "skill"}
    context = "Notes of the garden meeting. " * 20
    a = {
        **record("Who orders the compost?", "Ahmed orders two tonnes of compost."),
        "context": context,
    }
    b = {
        **record("Who makes the posters?", "Rosa makes posters for the fair.", 1),
        "context": context,
    }
    kept, stats = filters.filter_leaf(seeds, [a, b], FilterConfig())
    assert len(kept) == 2, stats
    assert kept[0]["messages"][0]["content"] == f"{context}\n\nWho orders the compost?"


def test_a_grounded_skill_asks_one_question_of_many_contexts():
    """A templated question over new contexts is no copy of a seed, nor a duplicate of a
    sample over another context; the same question, answer and context is."""
    question = "Which goods and services class fits the business description?"
    seeds = {
        **SEEDS,
        "leaf": "compositional_skills/test/classes",
        "kind": "skill",
        "seed_examples": [
            {"question": question, "answer": "Class 31.", "context": "A plant nursery."},
            {"question": question, "answer": "Class 5.", "context": "A veterinary drug maker."},
        ],
    }
    generated = [
        {**record(question, "Class 31.", 0), "context": "A shop that sells garden seeds."},
        {**record(question, "Class 31.", 1), "context": "A bakery selling cakes and bread."},
        {**record(question, "Class 31.", 2), "context": "A bakery selling cakes and bread!"},
        {**record(question, "Class 5.", 3), "context": "A veterinary drug maker."},
    ]
    kept, stats = filters.filter_leaf(seeds, generated, FilterConfig())
    assert [k["context"] for k in kept] == [g["context"] for g in generated[:2]]
    assert stats["removed"] == {"exact_duplicate": 1, "copies_a_seed": 1}


def test_a_leaf_whose_answers_repeat_their_questions_may_do_so():
    skill = {**SEEDS, "kind": "skill", "leaf": "compositional_skills/test/echo"}
    echo = {**skill, "seed_examples": [{"question": "1", "answer": "1", "context": None}]}
    generated = [record("7", "7", 0), record("8", "8", 1)]
    kept, _ = filters.filter_leaf(echo, generated, FilterConfig())
    assert [k["answer"] for k in kept] == ["7", "8"]
    kept, stats = filters.filter_leaf(skill, generated, FilterConfig(min_question_words=1))
    assert kept == [] and stats["removed"] == {"answer_repeats_question": 2}
