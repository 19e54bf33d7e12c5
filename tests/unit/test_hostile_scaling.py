"""Inputs sized to make labmake slow: work grows linearly, and the caps refuse cleanly.

Timings on a shared machine are noisy, so linearity is checked by counting work (comparisons,
characters tokenized), with generous wall-clock bounds only where the old code took minutes.
"""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest
from hostile import KNOWLEDGE_LEAF, SKILL_LEAF, knowledge, put

from labmake.taxonomy import caps, formats, schema
from labmake.taxonomy.caps import MAX_SEED_EXAMPLES
from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.chunking import chunk_tokens
from labmake.taxonomy.limits import estimate_tokens


def skill_file(n: int, repeat_every: int = 0) -> str:
    examples = "".join(
        f"- {{question: q{i % repeat_every if repeat_every else i:x}, answer: a}}\n"
        for i in range(n)
    )
    return f"version: 3\ncreated_by: t\ntask_description: Answer.\nseed_examples:\n{examples}"


def test_uniqueness_of_many_items_is_checked_in_one_pass():
    items = [{"question": f"q{i}", "answer": "a"} for i in range(20_000)] + [{"question": "q7"}]
    items.append({"question": "q3", "answer": "a"})  # a repeat of item 3
    checker = schema._validator_class()({"x": {"type": "list", "unique_items": True}})
    started = time.monotonic()
    assert not checker.validate({"x": items})
    # Pairwise comparison was 200 million comparisons here (minutes); one pass is milliseconds.
    assert time.monotonic() - started < 5
    assert [(e.info) for e in schema.leaf_errors(checker._errors)] == [(3, 20_001)]


def test_the_hash_key_agrees_with_json_equality():
    rng = random.Random(7)
    atoms = [0, 1, 1.0, 2.5, True, False, None, "1", "a", "", [1], [1.0], [True], {"k": 1}]
    atoms += [{"k": 1.0}, {"k": True}, {"k": [1, "a"]}, {"k": [1.0, "a"]}, {"j": 1}, [[]], []]
    values = atoms + [[rng.choice(atoms), rng.choice(atoms)] for _ in range(40)]
    for a, b in itertools.product(values, repeat=2):
        assert (schema._json_key(a) == schema._json_key(b)) == schema._json_equal(a, b), (a, b)


def test_a_file_of_many_examples_is_refused_by_the_cap_naming_it(tmp_path: Path, monkeypatch):
    assert MAX_SEED_EXAMPLES == 10_000  # the cap; a smaller one below keeps the test quick
    monkeypatch.setattr(caps, "MAX_SEED_EXAMPLES", 300)
    # Through aliases, so that only the count after parsing sees them.
    examples = "- &e {question: q, answer: a}\n" + "- *e\n" * 300
    put(tmp_path, SKILL_LEAF, skill_file(0) + examples)
    (finding,) = [f for f in validate_leaf(tmp_path, SKILL_LEAF) if f.level == "error"]
    assert finding.message == "the file has 301 seed examples, over labmake's cap of 300 per file"
    assert finding.line == 5  # at seed_examples
    assert finding.source == "security" and "split the leaf" in finding.hint


def test_a_megabyte_of_tiny_examples_is_refused_before_it_is_parsed(tmp_path: Path):
    put(tmp_path, SKILL_LEAF, skill_file(32_000))  # under the 1 MiB cap on the file's size
    started = time.monotonic()
    (finding,) = [f for f in validate_leaf(tmp_path, SKILL_LEAF) if f.level == "error"]
    assert time.monotonic() - started < 3  # parsing it first took 16 s; pairwise, minutes
    assert finding.message == (
        "the file has 32,000 `question:` entries, over labmake's cap of 10,000 seed examples "
        "(or question/answer pairs) per file"
    )


def test_repeated_examples_in_a_large_file_are_each_reported_once(tmp_path: Path):
    put(tmp_path, SKILL_LEAF, skill_file(600, repeat_every=300))
    errors = [f for f in validate_leaf(tmp_path, SKILL_LEAF) if f.level == "error"]
    assert len(errors) == 300  # items 300..599 repeat items 0..299
    assert all("repeats" in f.message or "same" in f.message for f in errors[:3]), errors[:3]


class CountingTokenizer:
    """Counts the characters it was asked to tokenize (about a word's worth per token)."""

    def __init__(self) -> None:
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.chars += len(text)
        return estimate_tokens(text)


def document(n_bytes: int) -> str:
    rng = random.Random(n_bytes)
    words = "the river carries water from the hills to the sea every season".split()
    text = " ".join(rng.choice(words) for _ in range(n_bytes // 4))
    return text[:n_bytes]


@pytest.mark.parametrize("size", [1 << 18, 1 << 20])
def test_chunking_tokenizes_each_part_of_a_document_a_bounded_number_of_times(size: int):
    count = CountingTokenizer()
    text = document(size)
    chunks = chunk_tokens(text, count, 200, 32)
    assert len(chunks) > size // 1000
    # The old search tokenized half of the remaining document per chunk: at 1 MiB that was
    # ~650 times the document's length. The window keeps it a constant multiple.
    assert count.chars < 40 * size, count.chars / size


def test_chunking_a_document_at_the_size_cap_takes_seconds():
    text = document(formats.MAX_TEXT_BYTES)
    started = time.monotonic()
    chunks = chunk_tokens(text, estimate_tokens, 200, 32)
    assert time.monotonic() - started < 60  # the old search: hours
    assert all(estimate_tokens(c) <= 200 for c in chunks)


def test_the_window_gives_the_same_chunks_as_a_search_over_the_whole_rest():
    text = document(40_000)
    for size, overlap in ((200, 32), (40, 0), (25, 24), (64, 16)):
        assert chunk_tokens(text, estimate_tokens, size, overlap) == _reference(
            text, estimate_tokens, size, overlap
        )


def _reference(text: str, count, size: int, overlap: int) -> list[str]:  # type: ignore[no-untyped-def]
    """The former chunking: a binary search over the whole rest of the document per chunk."""
    from labmake.taxonomy.chunking import _WORD_WITH_SPACE

    words = [m.group(0) for m in _WORD_WITH_SPACE.finditer(text)]

    def tokens(a: int, b: int) -> int:
        return count("".join(words[a:b]).strip())

    chunks, start = [], 0
    while start < len(words):
        low, high = start + 1, len(words)
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if tokens(start, mid) <= size else (low, mid - 1)
        chunks.append("".join(words[start:low]).strip())
        if low == len(words):
            break
        end, low, high = low, start + 1, low
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if tokens(mid, end) <= overlap else (mid + 1, high)
        start = low
    return chunks


def test_a_document_over_the_cap_is_refused_naming_it(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_TEXT_BYTES", 4096)
    put(tmp_path, KNOWLEDGE_LEAF, knowledge("document:\n  patterns: ['*.md']\n"))
    (tmp_path / KNOWLEDGE_LEAF / "big.md").write_text("word " * 2000, encoding="utf-8")
    (finding,) = [f for f in validate_leaf(tmp_path, KNOWLEDGE_LEAF) if f.level == "error"]
    assert finding.message == "document big.md is 10 KiB, over the 4 KiB limit"
