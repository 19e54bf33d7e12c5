"""One GGUF's evaluation in llama.cpp from one load: its greedy answers and its log-probs.

An evaluation job used to open a GGUF twice (answers one at a time through the chat API, then
again with every position's logits for retention). :class:`GgufEvaluator` loads it once and
drives one multi-sequence context (the llama-cpp teacher's, so decoding has one implementation):

- answers: each item's conversation rendered with the chat template and decoded greedily,
  ``EVAL_PARALLEL`` items per batch (on 2 CPU cores about 1.5x the tokens/s of one at a time,
  see :mod:`labmake.teacher.llamacpp`). The base answers in the student's template, the one
  training used and every tuned GGUF carries (a student GGUF may carry another one, or none:
  the embedded base ships none, and llama-cpp-python would then guess an unrelated format); a
  tuned GGUF answers in its own. The same items in the same groups give the same bytes, run
  after run.
- log-probs: the rows retention scores, computed only where they are scored (the output layer
  of a 262k vocabulary costs more than the rest of a 270M model).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from labmake.core.config import EvaluateConfig, TeacherConfig
from labmake.evaluation.answers import Answers
from labmake.teacher.llamacpp import N_BATCH, BatchedLlamaCppTeacher
from labmake.teacher.protocol import Completion, Request

EVAL_PARALLEL = 8  # items decoded together
CHAT_REPEAT_PENALTY = 1.1  # llama-cpp-python's create_chat_completion default


class GgufEvaluator(BatchedLlamaCppTeacher):
    """A GGUF loaded once for an evaluation job; close it (or use ``with``) when done."""

    def __init__(
        self,
        gguf: Path,
        *,
        n_ctx: int,
        n_threads: int,
        n_gpu_layers: int = 0,
        max_new_tokens: int = 64,
        chat_template: str | None = None,
    ) -> None:
        """``chat_template``: the one to answer in (default: the GGUF's own)."""
        cfg = TeacherConfig(
            gguf=str(gguf),
            n_ctx=max(n_ctx, 256),
            n_threads=n_threads,
            n_gpu_layers=n_gpu_layers,
            n_parallel=EVAL_PARALLEL,
            # Greedy with llama-cpp-python's chat default penalty, as the answers always were.
            temperature=0.0,
            repeat_penalty=CHAT_REPEAT_PENALTY,
            max_tokens=max_new_tokens,
        )
        super().__init__(cfg, Path(gguf))
        self._template = chat_template or self._llm.metadata.get("tokenizer.chat_template")

    def __enter__(self) -> GgufEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answers ------------------------------------------------------------------------------

    def _prompt_tokens(self, request: Request) -> list[int]:
        # A rendered chat prompt: its turn markers are the template's control tokens, and the
        # template writes the BOS itself (llama-cpp-python's chat API tokenizes it this way).
        return self._llm.tokenize(request.prompt.encode("utf-8"), add_bos=False, special=True)

    @functools.cached_property
    def _formatter(self) -> Any:
        """The chat template as llama-cpp-python's chat API renders it (sandboxed Jinja2)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not self._template:
            raise ValueError(
                f"{self.gguf_path}: the GGUF has no chat template and none was given; "
                "its answers cannot be put in a chat format"
            )
        llm = self._llm

        def text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

        return Jinja2ChatFormatter(
            self._template,
            eos_token=text(llm.token_eos()),
            bos_token=text(llm.token_bos()),
            add_generation_prompt=True,
        )

    def _render(self, messages: Sequence[dict[str, Any]]) -> str:
        return str(self._formatter(messages=list(messages)).prompt)

    def answers(self, items: Sequence[dict[str, Any]]) -> Answers:
        """Greedy answers to every item's conversation but its last (reference) turn."""
        requests = [
            Request(
                prompt=self._render(item["messages"][:-1]), seed=0, max_tokens=self.cfg.max_tokens
            )
            for item in items
        ]
        done: dict[int, Completion] = {}
        started = time.perf_counter()
        self.complete_many(requests, lambda i, completion: done.__setitem__(i, completion))
        seconds = time.perf_counter() - started
        texts = [done[i].text.strip() for i in range(len(requests))]
        return Answers(texts, sum(c.completion_tokens for c in done.values()), seconds)

    # -- log-probs ----------------------------------------------------------------------------

    def logprob_rows(self, ids: Sequence[int], first: int, last: int) -> np.ndarray:
        """Log-softmax rows (float64) of the positions ``first`` .. ``last - 1`` of ``ids``:
        row k predicts token ``first + k + 1``. Logits are computed at those positions only."""
        if len(ids) > self.cfg.n_ctx:
            raise ValueError(f"{len(ids)} tokens do not fit the context of {self.cfg.n_ctx}")
        lib = self._lib
        rows: list[np.ndarray] = []
        pending: list[int] = []
        lib.llama_memory_clear(self._memory, True)
        self._batch.n_tokens = 0
        try:
            for pos, token in enumerate(ids):
                wanted = first <= pos < last
                j = self._add(int(token), pos, 0, wanted)
                if wanted:
                    pending.append(j)
                if self._batch.n_tokens == N_BATCH or pos == len(ids) - 1:
                    self._decode()
                    rows.extend(self._logits(j) for j in pending)
                    pending = []
                    self._batch.n_tokens = 0
        finally:
            lib.llama_memory_clear(self._memory, True)
        # llama.cpp's logits are float32: shift and exponentiate them in float32 (half the
        # memory traffic of float64 over a 262k vocabulary) and sum in float64.
        shifted = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1)
        shifted -= shifted.max(axis=1, keepdims=True)
        total = np.exp(shifted).sum(axis=1, keepdims=True, dtype=np.float64)
        return shifted.astype(np.float64) - np.log(total)

    def _logits(self, j: int) -> np.ndarray:
        pointer = self._lib.llama_get_logits_ith(self._ctx, j)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).copy()


CHAT_MARGIN_TOKENS = 64  # a chat template's turn markers around a question


def context_size(
    gguf: Path,
    items: Sequence[dict[str, Any]],
    max_new_tokens: int,
    token_counts: Sequence[int] = (),
) -> int:
    """A context that fits the longest question with its answer (a grounded skill carries its
    context) and every sequence of ``token_counts``; counted with the vocabulary alone (cheap);
    the margin covers the chat template's turn markers."""
    from labmake.core.llama import open_vocab

    vocab = open_vocab(gguf)
    try:
        longest = max(
            (
                len(vocab.tokenize(" ".join(m["content"] for m in it["messages"]).encode("utf-8")))
                for it in items
            ),
            default=0,
        )
    finally:
        vocab.close()
    return max(1024, longest + max_new_tokens + CHAT_MARGIN_TOKENS, *token_counts)


def open_evaluator(
    gguf: Path,
    items: Sequence[dict[str, Any]],
    cfg: EvaluateConfig,
    *,
    chat_template: str | None = None,
    token_counts: Sequence[int] = (),
) -> GgufEvaluator:
    """The evaluator of ``gguf`` for ``items`` (and sequences of ``token_counts`` tokens)."""
    return GgufEvaluator(
        gguf,
        n_ctx=context_size(gguf, items, cfg.max_new_tokens, token_counts),
        n_threads=cfg.n_threads,
        n_gpu_layers=cfg.n_gpu_layers,
        max_new_tokens=cfg.max_new_tokens,
        chat_template=chat_template,
    )
