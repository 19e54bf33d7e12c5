"""labmake's own limits: what InstructLab's documentation asks of a qna.yaml but its validator
never checks, and whether the seed examples fit the teacher's context window.

These run only on files that passed the schema, so the data has the schema's shape. They are
off in ``--ilab-strict`` mode. By default they are warnings: real, accepted InstructLab files
break them (measured on the 1,891-file conformance corpus: see tests/unit/test_conformance.py),
and labmake must accept every file the reference accepts. ``--strict-limits`` makes them errors.

Words are counted as whitespace-separated runs; tokens are *estimated* as one per
:data:`CHARS_PER_TOKEN` characters (about right for English with the common tokenizers);
no tokenizer is loaded during validation.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labmake.taxonomy.findings import WARNING, Issue, yaml_path

# InstructLab documents these limits (docs.instructlab.ai, "The knowledge files" and "The
# skills files"): a context under about 500 tokens, questions and answers under about 250,
# and about 2300 words of questions and answers in one skill file. labmake counts words.
MAX_CONTEXT_WORDS = 500
MAX_QUESTION_WORDS = 250
MAX_ANSWER_WORDS = 250
MAX_TOTAL_QA_WORDS = 2300

CHARS_PER_TOKEN = 4
TEMPLATE_TOKENS = 40  # the prompt template's own text (instructions, "Q:"/"A:" markers)
EXAMPLE_OVERHEAD_TOKENS = 8  # markers and separators around each example


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _words(text: str) -> int:
    return len(text.split())


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class PromptBudget:
    """What one teacher prompt must hold, from params.yaml (teacher, generate, seeds)."""

    n_ctx: int = 2048
    max_tokens: int = 160
    examples_per_prompt: int = 3
    chunk_tokens: int = 200
    # The knowledge pipeline's first round asks samples_per_chunk requests of every chunk; a
    # document whose chunks would pass max_requests costs more than the leaf's budget.
    samples_per_chunk: int = 4
    max_requests: int = 240

    def fixed_tokens(self, kind: str, task_description: str) -> int:
        """Tokens every prompt spends besides its seed examples, answer room included."""
        fixed = TEMPLATE_TOKENS + self.max_tokens
        if kind == "knowledge":
            return fixed + self.chunk_tokens
        return fixed + estimate_tokens(task_description)


def _strings(data: Mapping[str, Any], kind: str) -> Iterator[tuple[tuple[Any, ...], str, str]]:
    """(path, role, text) for every text the schema allows; role names the field."""
    for key in ("created_by", "task_description", "domain", "document_outline"):
        if isinstance(data.get(key), str):
            yield (key,), key, data[key]
    for i, example in enumerate(data["seed_examples"]):
        if isinstance(example.get("context"), str):
            yield ("seed_examples", i, "context"), "context", example["context"]
        if kind == "knowledge":
            for j, pair in enumerate(example["questions_and_answers"]):
                for role in ("question", "answer"):
                    yield ("seed_examples", i, "questions_and_answers", j, role), role, pair[role]
        else:
            for role in ("question", "answer"):
                yield ("seed_examples", i, role), role, example[role]
    document = data.get("document")
    if isinstance(document, Mapping):
        for k, pattern in enumerate(document.get("patterns", [])):
            yield ("document", "patterns", k), "pattern", pattern


_WORD_LIMITS = {
    "context": MAX_CONTEXT_WORDS,
    "question": MAX_QUESTION_WORDS,
    "answer": MAX_ANSWER_WORDS,
}


def limit_issues(data: Mapping[str, Any], kind: str, level: str = WARNING) -> list[Issue]:
    """Blank texts, over-long texts, too much Q&A in total, repeated examples."""
    issues: list[Issue] = []
    total_qa = 0
    for path, role, text in _strings(data, kind):
        if not text.strip():
            issues.append(
                Issue(
                    path,
                    f"`{yaml_path(path)}` is blank (only spaces or newlines)",
                    f"write the {role.replace('_', ' ')}, or delete the entry",
                    "limits",
                    level,
                )
            )
            continue
        words = _words(text)
        if role in ("question", "answer"):
            total_qa += words
        limit = _WORD_LIMITS.get(role)
        if limit and words > limit:
            issues.append(
                Issue(
                    path,
                    f"`{yaml_path(path)}` has {words} words; InstructLab's guideline is at most "
                    f"{limit}",
                    f"shorten the {role}: the teacher sees it inside a prompt of limited size"
                    + (
                        "; split a long passage into two seed examples" if role == "context" else ""
                    ),
                    "limits",
                    level,
                )
            )
    if total_qa > MAX_TOTAL_QA_WORDS:
        issues.append(
            Issue(
                ("seed_examples",),
                f"the questions and answers total {total_qa} words; InstructLab's guideline is at "
                f"most {MAX_TOTAL_QA_WORDS}",
                "shorten the longest answers or drop some seed examples",
                "limits",
                level,
            )
        )
    issues.extend(_duplicates(data, kind, level))
    issues.extend(invisible_issues(data, kind, level))
    return issues


# Characters a reader does not see but the teacher and the model do: zero-width ones, and the
# bidirectional controls that make text display in another order than it is stored in
# ("Trojan Source"): a reviewer approves one text and the build trains on another.
_INVISIBLE = re.compile(
    "[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def invisible_issues(data: Mapping[str, Any], kind: str, level: str = WARNING) -> list[Issue]:
    """Zero-width and direction-changing characters in the file's texts, one issue per text."""
    issues = []
    for path, _role, text in _strings(data, kind):
        found = sorted(set(_INVISIBLE.findall(text)))
        if not found:
            continue
        names = ", ".join(
            f"U+{ord(c):04X} {unicodedata.name(c, 'FORMAT CHARACTER')}" for c in found
        )
        issues.append(
            Issue(
                path,
                f"`{yaml_path(path)}` contains invisible characters ({names})",
                "delete them (retype the text): a reader does not see them, but the teacher "
                "and the model do, and right-to-left controls make text read differently "
                "from what it is",
                "limits",
                level,
            )
        )
    return issues


def _duplicates(data: Mapping[str, Any], kind: str, level: str) -> list[Issue]:
    """Repeats that differ only in case or spacing (the schema catches exact copies)."""
    issues: list[Issue] = []
    seen: dict[Any, tuple[Any, ...]] = {}

    def note(key: Any, path: tuple[Any, ...], what: str) -> None:
        if key in seen:
            issues.append(
                Issue(
                    path,
                    f"`{yaml_path(path)}` repeats the {what} of `{yaml_path(seen[key])}`",
                    "make every seed example different: a repeat teaches nothing "
                    "new and doubles its weight",
                    "limits",
                    level,
                )
            )
        else:
            seen[key] = path

    for i, example in enumerate(data["seed_examples"]):
        base = ("seed_examples", i)
        if kind == "knowledge":
            note(("context", _norm(example["context"])), base + ("context",), "context")
            for j, pair in enumerate(example["questions_and_answers"]):
                key = ("pair", _norm(pair["question"]), _norm(pair["answer"]))
                note(key, base + ("questions_and_answers", j), "question and answer")
        else:
            # The same question may rightly get several answers (dice rolls, poems), and a
            # grounded skill asks one question of many contexts: only all three together repeat.
            key = (
                "example",
                _norm(example["question"]),
                _norm(example["answer"]),
                _norm(example.get("context") or ""),
            )
            note(
                key,
                base,
                "question and answer" + (" and context" if example.get("context") else ""),
            )
    return issues


def _units(data: Mapping[str, Any], kind: str) -> list[int]:
    """Estimated tokens of each seed example as a prompt shows it."""
    units = []
    for example in data["seed_examples"]:
        if kind == "knowledge":
            pairs = example["questions_and_answers"]
            text = example["context"] + "".join(p["question"] + p["answer"] for p in pairs)
            units.append(estimate_tokens(text) + EXAMPLE_OVERHEAD_TOKENS * (1 + len(pairs)))
        else:
            text = example["question"] + example["answer"] + (example.get("context") or "")
            units.append(estimate_tokens(text) + EXAMPLE_OVERHEAD_TOKENS)
    return units


def context_issues(
    data: Mapping[str, Any], kind: str, budget: PromptBudget, level: str = WARNING
) -> list[Issue]:
    """Do the seed examples fit the teacher's context window next to a chunk and the answer?"""
    units = _units(data, kind)
    room = budget.n_ctx - budget.fixed_tokens(kind, data.get("task_description") or "")
    what = "a document chunk, " if kind == "knowledge" else "the task description, "
    base = (
        f"teacher.n_ctx is {budget.n_ctx} tokens; {what}the template and "
        f"teacher.max_tokens ({budget.max_tokens}) leave about {max(room, 0)} for examples"
    )
    if not units:
        return []
    if min(units) > room:
        return [
            Issue(
                ("seed_examples",),
                f"no seed example fits in a teacher prompt (the smallest is about "
                f"{min(units)} tokens; {base})",
                "shorten the seed examples (contexts first), or raise teacher.n_ctx in "
                "params.yaml; as it is, every generation request for this leaf is skipped",
                "limits",
                level,
            )
        ]
    issues = []
    for i, tokens in enumerate(units):
        if tokens > room:
            issues.append(
                Issue(
                    ("seed_examples", i),
                    f"`seed_examples[{i}]` (about {tokens} tokens) never fits in a "
                    f"teacher prompt ({base})",
                    "shorten it, or raise teacher.n_ctx in params.yaml; the teacher "
                    "will never see this example",
                    "limits",
                    level,
                )
            )
    want = (
        budget.examples_per_prompt
        if kind != "knowledge"
        else max(1, math.ceil(budget.examples_per_prompt / 3))
    )
    largest = sorted(units, reverse=True)[:want]
    if not issues and len(units) >= want and sum(largest) > room:
        issues.append(
            Issue(
                ("seed_examples",),
                f"the {want} longest seed examples (about {sum(largest)} tokens) do "
                f"not fit in one teacher prompt ({base})",
                "prompts that draw them show fewer than generate.examples_per_prompt "
                "examples; shorten the longest ones if that matters",
                "limits",
                WARNING,
            )
        )
    return issues
