"""Text similarity shared by the stages: word tokens, ROUGE-L, MinHash, content-word overlap.

The filters use them to drop near-duplicates and ungrounded answers, the mix to keep held-out
questions out of training, the sdg blocks to judge wrong options, the evaluation to score
answers: one definition of each, so that all of them measure alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from labmake.core.config import NearDuplicateConfig

_TOKEN = re.compile(r"\w+", re.UNICODE)
# Function words carry no facts: leaving them out makes "is the answer in the chunk?" meaningful.
_STOPWORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those which who whom what when where why how do does did has have had not no "
    "than then so such can could will would should may might into over under about after before".split()
)
MINHASH_PERMUTATIONS = 128
MINHASH_SHINGLE = 3  # words per shingle: short samples still get several
MINHASH_SEED = 1  # fixed: the same texts always give the same signatures


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


def sample_tokens(question: str, answer: str, context: str | None) -> list[str]:
    """What near-duplicate checks compare: the whole sample. Questions of a skill are often one
    template with a new subject ("Write a haiku about the moon/ocean"): alone they look alike
    (ROUGE-L 0.83) though the samples are not."""
    return tokens(" ".join(part for part in (context, question, answer) if part))


def minhash(words: list[str]) -> Any:
    """A MinHash signature of the sample's word 3-grams (``datasketch``)."""
    from datasketch import MinHash

    signature = MinHash(num_perm=MINHASH_PERMUTATIONS, seed=MINHASH_SEED)
    n = MINHASH_SHINGLE
    shingles = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}
    for shingle in sorted(shingles):
        signature.update(shingle.encode("utf-8"))
    return signature


def similarity(cfg: NearDuplicateConfig) -> tuple[Callable[[list[str]], Any], Callable[..., float]]:
    """(make a comparable form of a sample's tokens, similarity of two forms) for the method."""
    if cfg.method == "minhash":
        return minhash, lambda a, b: float(a.jaccard(b))
    if cfg.method == "rouge_l":
        return (lambda words: words), rouge_l
    raise ValueError(
        f"params.yaml: filter.near_duplicate.method {cfg.method!r}; use rouge_l or minhash"
    )


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry content (stop words left out), in order."""
    return [w for w in tokens(text) if w not in _STOPWORDS]


def content_overlap(answer: str, chunk: str) -> float:
    """Share of the answer's content words that occur in the chunk."""
    words = content_words(answer)
    if not words:
        return 0.0
    chunk_words = set(tokens(chunk))
    return sum(w in chunk_words for w in words) / len(words)
