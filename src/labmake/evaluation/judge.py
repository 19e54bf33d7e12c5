"""The optional judge: a teacher that grades each greedy answer 1-10 against the reference.

The prompt is few-shot and completion-style (prompts/judge_answer.j2) so that a base model can
judge too; a reply without a clean grade counts as missing rather than being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from labmake.core.config import TeacherConfig
from labmake.core.hashing import derive_seed
from labmake.teacher.complete import complete_all, usage_logged
from labmake.teacher.protocol import Request
from labmake.teacher.shared import open_for_job

JUDGE_TEMPLATE = "judge_answer"
JUDGE_MAX_TOKENS = 12  # a grade is a number; a small cap also stops a rambling base model
JUDGE_ANSWER_CHARS = 600  # longer answers are cut in the judge prompt (the context is small)


@cache
def _prompts():  # type: ignore[no-untyped-def]
    from jinja2 import PackageLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Sandboxed like every template labmake renders: the values come from the taxonomy.
    return ImmutableSandboxedEnvironment(
        loader=PackageLoader("labmake.evaluation", "prompts"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge_prompt(question: str, reference: str, answer: str) -> str:
    return (
        _prompts()
        .get_template(f"{JUDGE_TEMPLATE}.j2")
        .render(
            question=_one_line(question, JUDGE_ANSWER_CHARS),
            reference=_one_line(reference, JUDGE_ANSWER_CHARS),
            answer=_one_line(answer, JUDGE_ANSWER_CHARS) or "(no answer)",
        )
        .rstrip()
    )


_SCORE = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)(?:\s*(?:/|out of)\s*10\b)?", re.IGNORECASE)


def parse_score(text: str) -> int | None:
    """The 1-10 grade at the start of a judge's reply ("7", " 8/10", "Score: 9 - ..."), or None.

    Only the first line counts, and only its first number: a reply that starts with prose
    ("The answer is good, 9") or gives a number outside 1-10 is unparseable, not guessed at.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.sub(r"^(score|grade|rating)\s*[:=]?\s*", "", first.strip(), flags=re.IGNORECASE)
    match = _SCORE.match(first)
    if not match:
        return None
    value = float(match.group(1))
    if not 1 <= value <= 10 or value != int(value):
        return None
    return int(value)


def judge_answers(
    judge: TeacherConfig, items: Sequence[dict[str, Any]], answers: Sequence[str], seed: int
) -> tuple[list[int | None], list[str], str]:
    """(grades, raw replies, judge identity). A grade's seed depends on the item and the answer
    only, so the same answer gets the same grade whichever model wrote it."""
    requests = [
        Request(
            judge_prompt(item["question"], item["answer"], answer),
            derive_seed(seed, "judge", item["leaf"], item["question"], answer),
            min(judge.max_tokens, JUDGE_MAX_TOKENS),
            ("\n",),
        )
        for item, answer in zip(items, answers, strict=True)
    ]
    with usage_logged("judge"):
        teacher = open_for_job(judge, "evaluate.judge")
        try:
            replies = [c.text for c in complete_all(teacher, requests, "judge")]
            identity = teacher.identity
        finally:
            teacher.close()
    return [parse_score(r) for r in replies], replies, identity
