"""Retention: how far a model drifted from the base on text no leaf taught, computed offline.

The reference (build/data/retention.jsonl, rule ``retention_reference``) is made once per base:

- ``general`` records: ``evaluate.retention.prompts`` openings drawn with the build seed from
  :data:`labmake.evaluation.general_prompts.PROMPTS`; after each, the base samples
  ``evaluate.retention.tokens`` tokens at temperature 1 (no top-k or top-p, so the text is a
  fair draw of what the base itself writes; llama.cpp on the student GGUF, for speed); then,
  for every continuation position, the base's ``top_k`` most likely next tokens and their
  log-probs under its Hugging Face weights (build/base), the weights every phase starts from.
- ``qa`` records: the items of each JSON-lines file in ``evaluate.retention.qa`` (general Q&A
  a user points at), rendered with the student's chat template and tokenized, with the answer's
  tokens marked, so that every model -- Hugging Face or GGUF -- scores the same token ids.

Every model's evaluation job then scores the reference (:func:`score`): per general record the
mean KL(base || model) and the mean NLL of the base's continuation (what those numbers are:
:mod:`labmake.training.drift`), per Q&A item the answer's mean NLL. Token ids are fed to
llama.cpp as they are, so a GGUF is measured on exactly the positions its Hugging Face source is.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from labmake.core import artifacts
from labmake.core.config import RetentionConfig
from labmake.core.hashing import derive_seed
from labmake.evaluation.general_prompts import PROMPTS
from labmake.training.drift import drift, hf_logprobs, record_scores

if TYPE_CHECKING:
    from labmake.evaluation.gguf_eval import GgufEvaluator

log = logging.getLogger(__name__)


def draw_prompts(cfg: RetentionConfig, seed: int) -> list[str]:
    """The build's general prompts: a seeded draw, in the shipped list's order."""
    n = min(cfg.prompts, len(PROMPTS))
    picked = sorted(
        random.Random(derive_seed(seed, "retention", "prompts")).sample(range(len(PROMPTS)), n)
    )
    return [PROMPTS[i] for i in picked]


def continuations(
    gguf: Path, prompts: Sequence[list[int]], cfg: RetentionConfig, seed: int, n_threads: int
) -> list[list[int]]:
    """What the base writes after each prompt: ``cfg.tokens`` tokens sampled at temperature 1
    from its whole distribution (no top-k, top-p or min-p, no penalty), seeded per prompt;
    stops after an end-of-sequence token. Sampled by llama.cpp from the student GGUF, the file
    the Hugging Face base was converted from: a 270M model decodes tens of tokens a second
    there, a few in transformers on a busy CPU."""
    from labmake.core.llama import open_llama

    n_ctx = max(len(p) for p in prompts) + cfg.tokens + 8
    llm = open_llama(gguf, n_ctx=n_ctx, n_threads=n_threads, seed=0)
    eos = llm.token_eos()
    out = []
    try:
        for ids in prompts:
            llm.reset()
            llm.set_seed(derive_seed(seed, "retention", "sample", *ids))
            tokens: list[int] = []
            for token in llm.generate(
                ids, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0, temp=1.0, repeat_penalty=1.0
            ):
                tokens.append(int(token))
                if token == eos or len(tokens) >= cfg.tokens:
                    break
            out.append(tokens)
    finally:
        llm.close()
    return out


def _general_record(
    model: Any, tokenizer: Any, prompt: str, ids: list[int], continuation: list[int], top_k: int
) -> dict[str, Any]:
    """The base's top-k next-token log-probs (Hugging Face weights, the scoring path itself,
    so the base scores 0 against its own reference) at every continuation position."""
    import torch

    full = ids + continuation
    with torch.no_grad():
        logprobs = hf_logprobs(model, full, len(ids))
    k = min(top_k, logprobs.shape[1])
    # Most likely first; equal log-probs in token order, so the choice is stable.
    top = np.argsort(-logprobs, axis=1, kind="stable")[:, :k]
    return {
        "kind": "general",
        "prompt": prompt,
        "continuation": tokenizer.decode(continuation),
        "ids": full,
        "start": len(ids),
        "top_ids": top.tolist(),
        "top_logprobs": np.round(np.take_along_axis(logprobs, top, axis=1), 6).tolist(),
    }


def _qa_records(tokenizer: Any, path: Path) -> list[dict[str, Any]]:
    """A user's Q&A file as scored items: ``messages``, or ``question`` and ``answer``."""
    from labmake.training.data import encode

    records = []
    for n, item in enumerate(artifacts.iter_jsonl(path), start=1):
        messages = item.get("messages") if isinstance(item, dict) else None
        if messages is None and isinstance(item, dict) and {"question", "answer"} <= set(item):
            messages = [
                {"role": "user", "content": str(item["question"])},
                {"role": "assistant", "content": str(item["answer"])},
            ]
        if not messages:
            raise ValueError(
                f"{path}: line {n} has neither 'messages' nor 'question' and 'answer' "
                "(evaluate.retention.qa)"
            )
        sample = encode(tokenizer, messages)
        records.append(
            {
                "kind": "qa",
                "set": Path(path).stem,
                "ids": list(sample.input_ids),
                "labels": list(sample.labels),
            }
        )
    return records


def build_reference(
    base_dir: Path,
    student_gguf: Path,
    cfg: RetentionConfig,
    seed: int,
    out: Path,
    n_threads: int = 2,
) -> None:
    """Write build/data/retention.jsonl from the base model (see the module docstring)."""
    from labmake.training.weights import load_tuned

    prompts = draw_prompts(cfg, seed)
    model, tokenizer = load_tuned(Path(base_dir), [])
    model.eval()
    ids = [list(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    log.info(
        "retention: the base continues %d general prompts by %d tokens", len(prompts), cfg.tokens
    )
    written = continuations(student_gguf, ids, cfg, seed, n_threads)
    records = [
        _general_record(model, tokenizer, p, i, c, cfg.top_k)
        for p, i, c in zip(prompts, ids, written, strict=True)
    ]
    for path in cfg.qa:
        qa = _qa_records(tokenizer, Path(path))
        log.info("retention: %d Q&A items from %s", len(qa), path)
        records.extend(qa)
    artifacts.write_jsonl(out, records)


# ------------------------------------------------------------------------- scoring


def _qa_nll(logprobs_of: Any, record: dict[str, Any]) -> float:
    """Mean NLL of the labelled tokens (row t-1 predicts token t)."""
    ids, labels = record["ids"], record["labels"]
    where = [t for t in range(1, len(ids)) if labels[t] != -100]
    rows = logprobs_of(record, where)
    return float(-np.mean([rows[i, ids[t]] for i, t in enumerate(where)])) if where else 0.0


def _collect(
    records: Sequence[dict[str, Any]], general: list[dict[str, float]], qa: list[float]
) -> dict[str, Any]:
    sets: dict[str, list[float]] = {}
    qa_records = [r for r in records if r["kind"] == "qa"]
    for record, value in zip(qa_records, qa, strict=True):
        sets.setdefault(record["set"], []).append(round(value, 6))
    return {
        "retention": {
            "kl": [round(s["kl"], 6) for s in general],
            "nll": [round(s["nll"], 6) for s in general],
        },
        "retention_qa": sets,
    }


def score_hf(model: Any, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A Hugging Face model's retention scores (the model already loaded, in eval mode)."""
    import torch

    general = drift(model, [r for r in records if r["kind"] == "general"])

    def logprobs_of(record: dict[str, Any], where: list[int]) -> np.ndarray:
        full = hf_logprobs(model, record["ids"], where[0]) if where else np.zeros((0, 1))
        first = where[0]
        return full[[t - first for t in where]]

    with torch.no_grad():
        qa = [_qa_nll(logprobs_of, r) for r in records if r["kind"] == "qa"]
    return _collect(records, general, qa)


def score_gguf(evaluator: GgufEvaluator, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A GGUF's retention scores: llama.cpp's log-probs at the same token positions."""

    def qa_rows(record: dict[str, Any], where: list[int]) -> np.ndarray:
        if not where:
            return np.zeros((0, 1))
        rows = evaluator.logprob_rows(record["ids"], where[0] - 1, where[-1])
        return rows[[t - where[0] for t in where]]

    general = [
        record_scores(r, evaluator.logprob_rows(r["ids"], r["start"] - 1, len(r["ids"]) - 1))
        for r in records
        if r["kind"] == "general"
    ]
    qa = [_qa_nll(qa_rows, r) for r in records if r["kind"] == "qa"]
    return _collect(records, general, qa)


def sequence_lengths(reference: Path) -> list[int]:
    """The token counts of the reference's records (what a llama.cpp context must hold)."""
    return [len(r["ids"]) for r in artifacts.iter_jsonl(reference)]


def score(
    reference: Path,
    *,
    model: Any = None,
    evaluator: GgufEvaluator | None = None,
    gguf: Path | None = None,
    n_threads: int = 2,
) -> dict[str, Any]:
    """One model's retention fields for build/eval/{model}.json: a loaded Hugging Face
    ``model``, a GGUF already loaded in an ``evaluator``, or a ``gguf`` file loaded here (on the
    CPU with ``n_threads``); with the reference's hash, which the report checks."""
    records = artifacts.read_jsonl(reference)
    if model is not None:
        scores = score_hf(model, records)
    elif evaluator is not None:
        scores = score_gguf(evaluator, records)
    else:
        from labmake.evaluation.gguf_eval import GgufEvaluator

        longest = max((len(r["ids"]) for r in records), default=0)
        with GgufEvaluator(Path(str(gguf)), n_ctx=longest + 8, n_threads=n_threads) as loaded:
            scores = score_gguf(loaded, records)
    return {**scores, "retention_sha256": artifacts.sha256_file(reference)}
