"""Stage 3 (per leaf): the pipeline's kept samples -> accepted samples as chat ``messages``.

The generate stage's pipeline already parsed, judged and exact-deduplicated; rule-based checks
here do what a weak judge cannot be trusted to, and are cheap to change (a filter edit never
re-asks the teacher): empty, over/under-long, an answer that repeats its question, blocklisted
patterns (boilerplate, refusals, links), knowledge answers whose content is not in their chunk,
exact duplicates, near-duplicates of a seed or of a kept sample (ROUGE-L or MinHash), and the
per-leaf cap. ``{leaf}.stats.json`` counts what each pipeline block and each filter removed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import FilterConfig
from labmake.core.text import content_overlap, sample_tokens, similarity, tokens


class EmptyLeafError(RuntimeError):
    """The filters kept nothing for a leaf: training on nothing would be silent failure."""


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


def rule_reason(
    question: str,
    answer: str,
    context: str | None,
    chunk: str | None,
    cfg: FilterConfig,
    blocklist: list[re.Pattern[str]],
) -> str | None:
    """The first rule a sample breaks, or None."""
    if not question.strip() or not answer.strip():
        return "empty"
    if not (cfg.min_question_words <= len(question.split()) <= cfg.max_question_words):
        return "question_length"
    if not (cfg.min_answer_words <= len(answer.split()) <= cfg.max_answer_words):
        return "answer_length"
    if tokens(answer) == tokens(question):
        return "answer_repeats_question"
    text = "\n".join(part for part in (context, question, answer) if part)
    if any(p.search(text) for p in blocklist):
        return "blocklist"
    if chunk is not None and content_overlap(answer, chunk) < cfg.min_chunk_overlap:
        return "not_grounded_in_chunk"
    return None


def to_messages(question: str, answer: str, context: str | None) -> list[dict[str, str]]:
    user = f"{context}\n\n{question}" if context else question
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


_PROVENANCE = ("id", "pipeline", "pipeline_version", "teacher", "seeds", "templates", "scores")


def filter_leaf(
    seeds: dict[str, Any], generated: list[dict[str, Any]], cfg: FilterConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    knowledge = seeds["kind"] == "knowledge"
    prepare, similar = similarity(cfg.near_duplicate)
    blocklist = compile_blocklist(cfg.blocklist)
    # Near-duplicates compare question + answer: grounded samples drawn from one context share
    # that long context, which alone would make them look alike (measured: 3 of 7 dropped).
    seed_forms = [
        prepare(sample_tokens(s["question"], s["answer"], None)) for s in seeds["seed_examples"]
    ]
    by_block: Counter[str] = Counter(r["rejected_by"] for r in generated if r["status"] != "kept")
    rejected: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []
    kept_forms: list[Any] = []
    seen_exact: set[tuple[str, ...]] = set()
    candidates = [r for r in generated if r["status"] == "kept"]
    for record in candidates:
        question, answer = record.get("question") or "", record.get("answer") or ""
        context = None if knowledge else record.get("context")
        chunk = record.get("chunk") if knowledge else None
        reason = rule_reason(question, answer, context, chunk, cfg, blocklist)
        key = tuple(" ".join(tokens(p or "")) for p in (context, question, answer))
        form = prepare(sample_tokens(question, answer, None))
        threshold = cfg.near_duplicate.threshold
        if reason is None and key in seen_exact:
            reason = "exact_duplicate"
        if reason is None and any(similar(form, s) >= threshold for s in seed_forms):
            reason = "copies_a_seed"
        if reason is None and any(similar(form, k) >= threshold for k in kept_forms):
            reason = "near_duplicate"
        if reason is None and len(kept) >= cfg.max_samples_per_leaf:
            reason = "over_max_samples_per_leaf"
        if reason:
            rejected[reason] += 1
            continue
        seen_exact.add(key)
        kept_forms.append(form)
        sample = {"leaf": seeds["leaf"], "kind": seeds["kind"], "source": "generated"}
        sample.update({k: record.get(k) for k in _PROVENANCE})
        sample.update(question=question, answer=answer, context=context)
        if knowledge:
            sample.update(chunk=record.get("chunk"), chunk_index=record.get("chunk_index"))
        sample["messages"] = to_messages(question, answer, context)
        kept.append(sample)
    pipelines = sorted({(r["pipeline"], r["pipeline_version"]) for r in generated})
    stats = {
        "leaf": seeds["leaf"],
        "pipeline": [f"{name} v{version}" for name, version in pipelines],
        "generated": len(generated),
        "removed_by_pipeline": {block: n for block, n in sorted(by_block.items())},
        "candidates": len(candidates),
        "kept": len(kept),
        "removed": {reason: n for reason, n in sorted(rejected.items()) if n},
    }
    return kept, stats


def run(
    seeds_path: Path, generated_path: Path, cfg: FilterConfig, out: Path, stats_out: Path
) -> None:
    seeds = artifacts.read_json(seeds_path)
    kept, stats = filter_leaf(seeds, artifacts.read_jsonl(generated_path), cfg)
    artifacts.write_json(stats_out, stats)
    if not kept:
        raise EmptyLeafError(
            f"{seeds['leaf']}: the filters kept 0 of {stats['candidates']} samples the pipeline "
            f"kept ({stats['generated']} generated; removed by the pipeline's judges: "
            f"{stats['removed_by_pipeline']}; by the filters: {stats['removed']}); see "
            f"{stats_out}. Hints: the teacher may be too weak for this leaf (set teacher.gguf to "
            "a stronger model), raise the sample counts in params.yaml's generate section, try "
            "generate.pipeline: simple, or relax the thresholds in the filter section."
        )
    artifacts.write_jsonl(out, kept)
