"""Cut knowledge documents into overlapping chunks measured in tokens.

A chunk is the passage the teacher reads in one prompt (and the student in LAB's phase-1
form), so its size is a token budget, counted with a real tokenizer: the teacher's GGUF, or the
student's when the teacher is a remote server labmake cannot tokenize with. Chunks end at
whitespace (a word is never split) and keep the document's own line breaks; each chunk is the
longest run of words within ``size`` tokens, and the next one starts so that the two share at
most ``overlap`` tokens. Pure function of (text, tokenizer, sizes): deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

TokenCounter = Callable[[str], int]

_WORD_WITH_SPACE = re.compile(r"\S+\s*")


def chunk_tokens(text: str, count_tokens: TokenCounter, size: int, overlap: int) -> list[str]:
    """Chunks of at most ``size`` tokens (a single longer word stands alone), sharing at most
    ``overlap`` tokens with the previous chunk."""
    if overlap >= size:
        raise ValueError(
            f"seeds: chunk_overlap_tokens ({overlap}) must be below chunk_tokens ({size})"
        )
    words = [m.group(0) for m in _WORD_WITH_SPACE.finditer(text)]

    def tokens(start: int, end: int) -> int:
        return count_tokens("".join(words[start:end]).strip())

    chunks: list[str] = []
    start = 0
    while start < len(words):
        end = _longest_run(tokens, start, len(words), size)
        chunks.append("".join(words[start:end]).strip())
        if end == len(words):
            break
        # The earliest next start whose run up to `end` fits in the overlap; always move on.
        low, high = start + 1, end
        while low < high:
            mid = (low + high) // 2
            if tokens(mid, end) <= overlap:
                high = mid
            else:
                low = mid + 1
        start = low
    return chunks


def _longest_run(tokens: Callable[[int, int], int], start: int, n: int, size: int) -> int:
    """The end of the longest run of words from ``start`` within ``size`` tokens (at least one
    word), as a binary search over the whole rest of the document finds it.

    The search window grows from about one chunk, doubling while the run still fits, so no
    probe measures much more than a chunk's text: searching the whole rest had every chunk
    tokenize half the remaining document, quadratic in its length (an 8 MiB document took
    hours). Token counts grow with the run, so the answer is the same.
    """
    low, step = start + 1, size + 1  # a word is rarely under one token: size + 1 words overflow
    high = min(n, start + step)
    while high < n and tokens(start, high) <= size:
        low, step = high, step * 2
        high = min(n, start + step)
    # tokens(start, low) fits (or low is the first word, which stands alone); past high nothing
    # fits, or high is the end of the document.
    while low < high:
        mid = (low + high + 1) // 2
        if tokens(start, mid) <= size:
            low = mid
        else:
            high = mid - 1
    return low


@lru_cache(maxsize=4)
def gguf_token_counter(gguf: Path) -> TokenCounter:
    """Token counts from a GGUF's own tokenizer. Only the vocabulary is loaded (no weights, no
    context), so a tokenizer-only GGUF works too; the model stays loaded for the process."""
    import llama_cpp

    from labmake.core.llama import LlamaLoadError, load_model

    try:
        model = load_model(gguf, vocab_only=True)
    except LlamaLoadError:
        raise ValueError(f"{gguf}: llama.cpp cannot read the tokenizer of this GGUF") from None
    vocab = llama_cpp.llama_model_get_vocab(model)

    def count(text: str) -> int:
        data = text.encode("utf-8")
        # With no room for tokens, llama_tokenize returns minus the number it needs.
        needed = llama_cpp.llama_tokenize(vocab, data, len(data), None, 0, False, False)
        if needed <= 0:
            return -needed
        buffer = (llama_cpp.llama_token * needed)()
        return int(llama_cpp.llama_tokenize(vocab, data, len(data), buffer, needed, False, False))

    count.model = model  # type: ignore[attr-defined]  # keeps the C model alive with the closure
    return count
