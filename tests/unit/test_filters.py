import pytest

from labmake import filters
from labmake.config import FilterConfig

SEEDS = {
    "leaf": "knowledge/test/lighthouses",
    "kind": "knowledge",
    "grounded": False,
    "seed_examples": [
        {"question": "What does a lighthouse warn ships about?", "answer": "Rocks.", "context": "c"}
    ],
}
CHUNK = (
    "The first lighthouse of Alexandria stood on the island of Pharos. Its fire burned at the top "
    "of a tall stone tower and could be seen by sailors far out at sea."
)


def record(completion: str, index: int = 0, finished: bool = True, chunk: str | None = CHUNK):
    return {
        "leaf": SEEDS["leaf"],
        "kind": "knowledge",
        "index": index,
        "seed": 7,
        "teacher": "t",
        "template": "knowledge",
        "template_sha256": "x",
        "marker": "Q:",
        "chunk": chunk,
        "completion": completion,
        "finished": finished,
    }


def test_rouge_l():
    assert filters.rouge_l(["a", "b", "c"], ["a", "b", "c"]) == 1.0
    assert filters.rouge_l(["a", "b"], ["c", "d"]) == 0.0
    assert filters.rouge_l(["a", "x", "b"], ["a", "b"]) == pytest.approx(0.8)


def test_parse_items_multiline_and_malformed():
    text = "Q: one?\nA: line 1\nline 2\n---\nQ: two?\n---\nA: orphan answer\nQ: three?\nA: yes"
    items, malformed = filters.parse_items(text)
    assert [i["Q"] for i in items] == ["one?", "three?"]
    assert items[0]["A"] == "line 1\nline 2"
    assert malformed == 2  # a question without an answer, an answer without a question


def test_parse_grounded_item():
    items, malformed = filters.parse_items(
        "Context:\nNotes here.\nMore.\nQ: What?\nA: This.\n---\n"
    )
    assert malformed == 0
    assert items == [{"Context": "Notes here.\nMore.", "Q": "What?", "A": "This."}]


def test_filter_keeps_grounded_and_rejects_each_kind_of_bad_sample():
    completion = (
        " Where did the lighthouse of Alexandria stand?\nA: On the island of Pharos.\n---\n"
        "Q: Where did the lighthouse of Alexandria stand?\nA: On the island of Pharos.\n---\n"
        "Q: Who painted the Mona Lisa in Florence?\nA: Leonardo painted it in Florence, Italy.\n---\n"
        "Q: What does a lighthouse warn ships about?\nA: Rocks out at sea.\n---\n"
        "Q: Hi?\nA: The fire burned at the top.\n---\n"
        "Q: What could sailors see far out at sea?\n"
    )
    kept, stats = filters.filter_leaf(SEEDS, [record(completion)], FilterConfig())
    assert [k["question"] for k in kept] == ["Where did the lighthouse of Alexandria stand?"]
    assert kept[0]["messages"] == [
        {"role": "user", "content": "Where did the lighthouse of Alexandria stand?"},
        {"role": "assistant", "content": "On the island of Pharos."},
    ]
    assert kept[0]["teacher"] == "t" and kept[0]["seed"] == 7  # provenance travels
    assert stats["removed"] == {
        "exact_duplicate": 1,
        "not_grounded_in_chunk": 1,
        "copies_a_seed": 1,
        "question_length": 1,
        "malformed": 1,
    }
    assert stats["kept"] == 1 and stats["candidates"] == 5


def test_cut_off_last_item_is_dropped():
    completion = " What could sailors see?\nA: The fire at the top of a tall stone tower.\n---\nQ: Where?\nA: On the isl"
    kept, stats = filters.filter_leaf(SEEDS, [record(completion, finished=False)], FilterConfig())
    assert len(kept) == 1 and stats["removed"]["cut_off"] == 1


def test_templated_questions_with_new_content_are_not_duplicates():
    a = " Write about the tall stone tower.\nA: A fire burned at the top of the tower.\n---\n"
    b = " Write about the island of Pharos.\nA: Sailors saw it from far out at sea.\n---\n"
    kept, stats = filters.filter_leaf(SEEDS, [record(a, 0), record(b, 1)], FilterConfig())
    assert len(kept) == 2, stats


def test_near_duplicates_are_removed():
    a = " What burned at the top of the tall stone tower?\nA: A fire burned at the top.\n---\n"
    b = " What burned at the top of the tall stone tower then?\nA: A fire at the top of the tower.\n---\n"
    kept, stats = filters.filter_leaf(SEEDS, [record(a, 0), record(b, 1)], FilterConfig())
    assert len(kept) == 1 and stats["removed"] == {"near_duplicate": 1}


def test_empty_leaf_fails_loudly_and_writes_stats(tmp_path):
    from labmake import io

    seeds_path, gen_path = tmp_path / "s.json", tmp_path / "g.jsonl"
    io.write_json(seeds_path, SEEDS)
    io.write_jsonl(gen_path, [record(" Who?\nA: Nobody at all here.\n---\n")])
    with pytest.raises(filters.EmptyLeafError, match="kept 0 of 1") as err:
        filters.run(
            seeds_path, gen_path, FilterConfig(), tmp_path / "f.jsonl", tmp_path / "st.json"
        )
    assert "teacher" in str(err.value) and "params.yaml" in str(err.value)
    assert not (tmp_path / "f.jsonl").exists()
    assert io.read_json(tmp_path / "st.json")["kept"] == 0
