"""Greedy answers of a GGUF in llama.cpp: what the answer-overlap scores and the judge grade.

Answers come from the file a user would run (the chat template stored in the GGUF, llama.cpp's
own sampling at temperature 0), so a quantization's effect on answers shows up here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labmake.core.config import EvaluateConfig

CHAT_MARGIN_TOKENS = 64  # a chat template's turn markers around a question


@dataclass(frozen=True)
class Answers:
    texts: list[str]
    completion_tokens: int
    seconds: float  # wall time of the whole generation loop (prompt + decoding)


def _context_size(gguf: Path, items: Sequence[dict[str, Any]], cfg: EvaluateConfig) -> int:
    """A context that fits the longest question (a grounded skill carries its context), from
    the vocabulary alone (cheap); the margin covers the chat template's turn markers."""
    from labmake.core.llama import open_vocab

    vocab = open_vocab(gguf)
    try:
        longest = max(
            len(vocab.tokenize(" ".join(m["content"] for m in it["messages"]).encode("utf-8")))
            for it in items
        )
    finally:
        vocab.close()
    return max(1024, longest + cfg.max_new_tokens + CHAT_MARGIN_TOKENS)


def gguf_answers(gguf: Path, items: Sequence[dict[str, Any]], cfg: EvaluateConfig) -> Answers:
    """Greedy answers of a GGUF in llama.cpp, with the chat template stored in the GGUF."""
    from labmake.core.llama import open_llama

    n_ctx = _context_size(gguf, items, cfg)
    llm = open_llama(gguf, n_ctx=n_ctx, n_threads=cfg.n_threads, seed=0)
    texts, n_tokens = [], 0
    started = time.perf_counter()
    try:
        for item in items:
            llm.reset()  # a cached prompt prefix can change a greedy output
            out = llm.create_chat_completion(
                messages=item["messages"][:-1],
                max_tokens=cfg.max_new_tokens,
                temperature=0.0,
                seed=0,
            )
            texts.append((out["choices"][0]["message"]["content"] or "").strip())
            n_tokens += int(out["usage"]["completion_tokens"])
    finally:
        llm.close()
    return Answers(texts, n_tokens, time.perf_counter() - started)
