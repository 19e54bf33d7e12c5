"""Greedy answers: what the answer-overlap scores and the judge grade.

A GGUF answers in llama.cpp (:mod:`labmake.evaluation.gguf_eval`: the file a user would run, so
a quantization's effect on answers shows up); a Hugging Face model answers here, for models no
GGUF was made of (``evaluate.hf_answers``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labmake.core.config import EvaluateConfig

HF_BATCH = 8  # items a Hugging Face model answers together


@dataclass(frozen=True)
class Answers:
    texts: list[str]
    completion_tokens: int
    seconds: float  # wall time of the whole generation loop (prompt + decoding)


def _stop_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an answer: the end of sequence and the first token the chat template
    writes after an assistant's text (Gemma's <end_of_turn>)."""
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
    full = tokenizer.apply_chat_template(probe, tokenize=False)
    after = full[full.rindex("ANSWER") + len("ANSWER") :].strip()
    ids = {tokenizer.eos_token_id}
    if after:
        ids.add(tokenizer(after, add_special_tokens=False)["input_ids"][0])
    return sorted(i for i in ids if i is not None)


def hf_answers(
    model: Any, tokenizer: Any, items: Sequence[dict[str, Any]], cfg: EvaluateConfig
) -> Answers:
    """Greedy answers of a Hugging Face model (the base, or it with phases applied), with its
    tokenizer's chat template: for models no GGUF was made of (``evaluate.hf_answers``).

    Items are decoded HF_BATCH at a time (left-padded): on a CPU a step's cost is mostly
    per-step overhead, so a batch of answers costs little more than one."""
    import torch

    stop = _stop_ids(tokenizer)
    prompts = [
        tokenizer.apply_chat_template(
            item["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        for item in items
    ]
    texts, n_tokens = [], 0
    started = time.perf_counter()
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for first in range(0, len(prompts), HF_BATCH):
            batch = tokenizer(
                prompts[first : first + HF_BATCH],
                add_special_tokens=False,
                padding=True,
                return_tensors="pt",
            )
            with torch.no_grad():
                out = model.generate(
                    **batch,
                    max_new_tokens=cfg.max_new_tokens,
                    do_sample=False,
                    eos_token_id=stop,
                    pad_token_id=tokenizer.pad_token_id,
                )
            for row in out[:, batch["input_ids"].shape[1] :].tolist():
                answer = row[: next((k for k, t in enumerate(row) if t in stop), len(row))]
                n_tokens += len(answer)
                texts.append(tokenizer.decode(answer, skip_special_tokens=True).strip())
    finally:
        tokenizer.padding_side = side
    return Answers(texts, n_tokens, time.perf_counter() - started)
