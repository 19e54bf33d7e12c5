"""Stage 3 (per leaf): raw teacher outputs -> accepted samples as chat ``messages``.

The teacher's completions are parsed strictly in the format the prompt showed it (items of
``Context:``/``Q:``/``A:`` separated by ``---``); then rule-based checks do what a weak judge
cannot be trusted to: reject malformed, cut-off, empty, over/under-long, copied and duplicate
items, and (knowledge) answers whose content is not found in their source chunk. Every
rejection is counted by reason in ``{leaf}.stats.json``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import io
from .config import FilterConfig


class EmptyLeafError(RuntimeError):
    """The filters kept nothing for a leaf: training on nothing would be silent failure."""


@dataclass(frozen=True)
class Candidate:
    question: str
    answer: str
    context: str | None
    source_index: int  # the request it came from


_MARKER = re.compile(r"^(Context|Q|A):\s?(.*)$")
_TOKEN = re.compile(r"\w+", re.UNICODE)
# Function words carry no facts: leaving them out makes "is the answer in the chunk?" meaningful.
_STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those which who whom what when where why how do does did has have had not no "
    "than then so such can could will would should may might into over under about after before".split()
)


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


def parse_items(text: str) -> tuple[list[dict[str, str]], int]:
    """Split a completion into items; returns (well-formed items, malformed count).

    An item is ``[Context: ...] Q: ... A: ...``; a marker's value runs until the next marker, so
    answers may span lines. Items are separated by ``---`` lines or by a new ``Q:``/``Context:``.
    """
    items: list[dict[str, str]] = []
    malformed = 0
    current: dict[str, list[str]] = {}
    field: str | None = None

    def close() -> None:
        nonlocal current, field, malformed
        if current:
            item = {k: "\n".join(v).strip() for k, v in current.items()}
            if "Q" in item and "A" in item:
                items.append(item)
            else:
                malformed += 1
        current, field = {}, None

    for line in text.splitlines():
        if line.strip() == "---":
            close()
            continue
        match = _MARKER.match(line.strip())
        if match:
            name, value = match.groups()
            # A new question or context after an answer starts the next item.
            if name in current or (name != "A" and "A" in current):
                close()
            if name == "A" and "Q" not in current:
                malformed += 1
                current, field = {}, None
                continue
            current[name] = [value]
            field = name
        elif field is not None:
            current[field].append(line)
        elif line.strip():
            malformed += 1
    close()
    return items, malformed


def candidates(record: dict[str, Any]) -> tuple[list[Candidate], Counter[str]]:
    rejected: Counter[str] = Counter()
    items, malformed = parse_items(record["marker"] + record["completion"])
    rejected["malformed"] += malformed
    if not record["finished"] and items:
        # The teacher hit max_tokens: the last answer may be cut mid-sentence.
        items.pop()
        rejected["cut_off"] += 1
    grounded = record["template"] == "skill_grounded"
    out = []
    for item in items:
        if grounded and not item.get("Context"):
            rejected["malformed"] += 1
            continue
        out.append(Candidate(item["Q"], item["A"], item.get("Context"), record["index"]))
    return out, rejected


def sample_tokens(question: str, answer: str, context: str | None) -> list[str]:
    """What near-duplicate checks compare: the whole sample. Questions of a skill are often one
    template with a new subject ("Write a haiku about the moon/ocean"): alone they look alike
    (ROUGE-L 0.83) though the samples are not."""
    return tokens(" ".join(part for part in (context, question, answer) if part))


def content_overlap(answer: str, chunk: str) -> float:
    """Share of the answer's content words that occur in the chunk."""
    words = [w for w in tokens(answer) if w not in _STOPWORDS]
    if not words:
        return 0.0
    chunk_words = set(tokens(chunk))
    return sum(w in chunk_words for w in words) / len(words)


def _reason(c: Candidate, cfg: FilterConfig, chunk: str | None) -> str | None:
    q_words, a_words = len(c.question.split()), len(c.answer.split())
    if not c.question.strip() or not c.answer.strip():
        return "empty"
    if not (cfg.min_question_words <= q_words <= cfg.max_question_words):
        return "question_length"
    if not (cfg.min_answer_words <= a_words <= cfg.max_answer_words):
        return "answer_length"
    if tokens(c.answer) == tokens(c.question):
        return "answer_repeats_question"
    if chunk is not None and content_overlap(c.answer, chunk) < cfg.min_chunk_overlap:
        return "not_grounded_in_chunk"
    return None


def to_messages(question: str, answer: str, context: str | None) -> list[dict[str, str]]:
    user = f"{context}\n\n{question}" if context else question
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def filter_leaf(
    seeds: dict[str, Any], generated: list[dict[str, Any]], cfg: FilterConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rejected: Counter[str] = Counter()
    seed_samples = [
        sample_tokens(
            s["question"], s["answer"], s["context"] if seeds["kind"] == "skill" else None
        )
        for s in seeds["seed_examples"]
    ]
    kept: list[dict[str, Any]] = []
    kept_samples: list[list[str]] = []
    seen_exact: set[tuple[str, str]] = set()
    total = 0
    for record in sorted(generated, key=lambda r: r["index"]):
        found, bad = candidates(record)
        rejected.update(bad)
        for c in found:
            total += 1
            reason = _reason(c, cfg, record["chunk"])
            key = (" ".join(tokens(c.question)), " ".join(tokens(c.answer)))
            sample = sample_tokens(c.question, c.answer, c.context)
            if reason is None and key in seen_exact:
                reason = "exact_duplicate"
            if reason is None and any(
                rouge_l(sample, s) >= cfg.near_duplicate_rouge_l for s in seed_samples
            ):
                reason = "copies_a_seed"
            if reason is None and any(
                rouge_l(sample, k) >= cfg.near_duplicate_rouge_l for k in kept_samples
            ):
                reason = "near_duplicate"
            if reason is None and len(kept) >= cfg.max_samples_per_leaf:
                reason = "over_max_samples_per_leaf"
            if reason:
                rejected[reason] += 1
                continue
            seen_exact.add(key)
            kept_samples.append(sample)
            kept.append(
                {
                    "leaf": seeds["leaf"],
                    "kind": seeds["kind"],
                    "source": "generated",
                    "request_index": record["index"],
                    "seed": record["seed"],
                    "teacher": record["teacher"],
                    "template": record["template"],
                    "template_sha256": record["template_sha256"],
                    "question": c.question,
                    "answer": c.answer,
                    "context": c.context,
                    "messages": to_messages(c.question, c.answer, c.context),
                }
            )
    stats = {
        "leaf": seeds["leaf"],
        "requests": len(generated),
        "candidates": total,
        "kept": len(kept),
        "removed": {reason: n for reason, n in sorted(rejected.items()) if n},
    }
    return kept, stats


def run(
    seeds_path: Path, generated_path: Path, cfg: FilterConfig, out: Path, stats_out: Path
) -> None:
    seeds = io.read_json(seeds_path)
    kept, stats = filter_leaf(seeds, io.read_jsonl(generated_path), cfg)
    io.write_json(stats_out, stats)
    if not kept:
        raise EmptyLeafError(
            f"{seeds['leaf']}: the filters kept 0 of {stats['candidates']} generated samples "
            f"(removed: {stats['removed']}); see {stats_out}. Hints: the teacher may be too weak "
            "for this leaf (set teacher.gguf to a stronger model), raise generate.requests_per_leaf, "
            "or relax the thresholds in params.yaml's filter section."
        )
    io.write_jsonl(out, kept)
