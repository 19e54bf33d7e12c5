"""Which of a leaf's samples the filters accept: the rules, one sample at a time, in order.

Shared by the filter stage (which writes what is accepted) and the generate stage (whose rounds
go on until enough samples are accepted), so both count the same way. Each sample is checked
against the rules (empty, length, an answer repeating its question, the blocklist, grounding in
its chunk for knowledge), then against the samples accepted before it (exact and near
duplicates), the leaf's seeds (a copy of a seed teaches nothing new) and the per-leaf cap.

The rules widen to what the leaf's own seeds do: a sample as short or as long as the leaf's
shortest or longest seed question (or answer) is never rejected for its length, and one whose
answer repeats its question is not rejected for that when the seeds' answers do so too, so a
leaf whose examples are one word, or 150-word explanations, is filtered by what it asks for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from labmake.core.config import FilterConfig
from labmake.core.text import content_overlap, sample_tokens, similarity, tokens


def compile_blocklist(patterns: tuple[str, ...]) -> list[re.Pattern[str]]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(
                f"params.yaml: filter.blocklist entry {pattern!r} is not a valid regular "
                f"expression ({exc}); escape special characters or remove it"
            ) from None
    return compiled


def word_bounds(seeds: Mapping[str, Any], cfg: FilterConfig) -> dict[str, tuple[int, int]]:
    """(min, max) words of a question and of an answer: params.yaml's, widened to the seeds'."""
    bounds = {}
    for what in ("question", "answer"):
        lengths = [len(str(s[what]).split()) for s in seeds["seed_examples"]] or [1]
        low = min(getattr(cfg, f"min_{what}_words"), min(lengths))
        bounds[what] = (max(1, low), max(getattr(cfg, f"max_{what}_words"), max(lengths)))
    return bounds


def rule_reason(
    question: str,
    answer: str,
    context: str | None,
    chunk: str | None,
    cfg: FilterConfig,
    blocklist: list[re.Pattern[str]],
    bounds: Mapping[str, tuple[int, int]] | None = None,
    echoes: bool = False,
) -> str | None:
    """The first rule a sample breaks, or None. ``echoes``: the leaf's own seeds answer with
    their question's words, so a sample doing so is not broken."""
    if not question.strip() or not answer.strip():
        return "empty"
    bounds = bounds or {
        "question": (cfg.min_question_words, cfg.max_question_words),
        "answer": (cfg.min_answer_words, cfg.max_answer_words),
    }
    for what, text in (("question", question), ("answer", answer)):
        low, high = bounds[what]
        if not low <= len(text.split()) <= high:
            return f"{what}_length"
    if tokens(answer) == tokens(question) and not echoes:
        return "answer_repeats_question"
    text = "\n".join(part for part in (context, question, answer) if part)
    if any(p.search(text) for p in blocklist):
        return "blocklist"
    if chunk is not None and content_overlap(answer, chunk) < cfg.min_chunk_overlap:
        return "not_grounded_in_chunk"
    return None


class Acceptor:
    """Accepts a leaf's samples one at a time, remembering the accepted ones for duplicates.

    Duplicates and copies of a seed compare question + answer; for a grounded skill the
    contexts must be alike too: samples drawn from one context share it (which alone would make
    them look alike), and a grounded skill often asks one templated question of many contexts
    (which alone would make every new context a copy).
    """

    def __init__(self, seeds: Mapping[str, Any], cfg: FilterConfig) -> None:
        self.cfg = cfg
        self.knowledge = seeds["kind"] == "knowledge"
        self.prepare, self.similar = similarity(cfg.near_duplicate)
        self.blocklist = compile_blocklist(cfg.blocklist)
        examples = seeds["seed_examples"]
        self.bounds = word_bounds(seeds, cfg)
        self.echoes = any(tokens(s["answer"]) == tokens(s["question"]) for s in examples)
        self.grounded = not self.knowledge and any(s.get("context") for s in examples)
        self.seed_forms = [
            self._forms(s.get("context"), s["question"], s["answer"]) for s in examples
        ]
        self.kept_forms: list[tuple[Any, Any]] = []
        self.seen_exact: set[tuple[str, ...]] = set()

    def _forms(self, context: str | None, question: str, answer: str) -> tuple[Any, Any]:
        """What near-duplicates compare: (question + answer, the context or None)."""
        pair = self.prepare(sample_tokens(question, answer, None))
        return pair, self.prepare(tokens(context or "")) if self.grounded else None

    def _alike(self, a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
        threshold = self.cfg.near_duplicate.threshold
        if self.similar(a[0], b[0]) < threshold:
            return False
        return a[1] is None or b[1] is None or self.similar(a[1], b[1]) >= threshold

    @property
    def accepted(self) -> int:
        return len(self.kept_forms)

    def _check(self, sample: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...], Any]:
        question, answer = sample.get("question") or "", sample.get("answer") or ""
        context = None if self.knowledge else sample.get("context")
        chunk = sample.get("chunk") if self.knowledge else None
        reason = rule_reason(
            question, answer, context, chunk, self.cfg, self.blocklist, self.bounds, self.echoes
        )
        key = tuple(" ".join(tokens(p or "")) for p in (context, question, answer))
        form = self._forms(context, question, answer)
        if reason is None and key in self.seen_exact:
            reason = "exact_duplicate"
        if reason is None and any(self._alike(form, s) for s in self.seed_forms):
            reason = "copies_a_seed"
        if reason is None and any(self._alike(form, k) for k in self.kept_forms):
            reason = "near_duplicate"
        return reason, key, form

    def precheck(self, sample: Mapping[str, Any]) -> str | None:
        """Why the filters will reject ``sample`` whatever else they accept (a rule, a copy of a
        seed, a duplicate of a sample accepted already), or None; remembers nothing. The
        pipelines ask this before paying judges for a sample."""
        return self._check(sample)[0]

    def reason(self, sample: Mapping[str, Any]) -> str | None:
        """Why ``sample`` is rejected, or None: then it is accepted (and remembered)."""
        reason, key, form = self._check(sample)
        if reason is None and self.accepted >= self.cfg.max_samples_per_leaf:
            reason = "over_max_samples_per_leaf"
        if reason is None:
            self.seen_exact.add(key)
            self.kept_forms.append(form)
        return reason
