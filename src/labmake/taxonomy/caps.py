"""The cap on seed examples per qna.yaml, counted twice: roughly before parsing, exactly after.

InstructLab asks for five or more examples and about 2,300 words in all; real files hold tens.
A file of tens of thousands of tiny examples still fits the 1 MiB cap on a file's size
(:mod:`labmake.taxonomy.source`), and only costs time: each example is parsed, linted, checked
and priced. Counting ``question:`` keys in the text costs milliseconds, where parsing a megabyte
of tiny examples only to refuse them took seconds; the exact count after parsing catches what
the text count cannot see (examples written through aliases).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from labmake.taxonomy.findings import Issue
from labmake.taxonomy.source import _err

MAX_SEED_EXAMPLES = 10_000  # per file; for knowledge, question/answer pairs in all too
_HINT = (
    "a leaf teaches with a handful of good examples (InstructLab asks for five or more, about "
    "2,300 words in all): keep the best ones, or split the leaf into several"
)
# A `question:` key, in block or flow style: every seed example of a skill and every pair of a
# knowledge file has one.
_QUESTION_KEY = re.compile(
    r"""(?m)(?:^[ \t]*(?:-[ \t]+)?|[{,][ \t]*)["']?question["']?[ \t]*:(?=\s)"""
)


def check_example_count(text: str) -> None:
    """:class:`ReadError` for a file with more ``question:`` keys than the cap allows examples."""
    count = sum(1 for _ in _QUESTION_KEY.finditer(text))
    if count > MAX_SEED_EXAMPLES:
        raise _err(
            f"the file has {count:,} `question:` entries, over labmake's cap of "
            f"{MAX_SEED_EXAMPLES:,} seed examples (or question/answer pairs) per file",
            _HINT,
            "security",
        )


def example_count_issue(data: Mapping[Any, Any]) -> Issue | None:
    """The parsed file's seed examples (or knowledge pairs) over the cap, or None."""
    examples = data.get("seed_examples")
    if not isinstance(examples, list):
        return None
    pairs = sum(
        len(e["questions_and_answers"])
        for e in examples
        if isinstance(e, Mapping) and isinstance(e.get("questions_and_answers"), list)
    )
    count, what = max((len(examples), "seed examples"), (pairs, "questions and answers"))
    if count <= MAX_SEED_EXAMPLES:
        return None
    return Issue(
        ("seed_examples",),
        f"the file has {count:,} {what}, over labmake's cap of {MAX_SEED_EXAMPLES:,} per file",
        _HINT,
        "security",
    )
