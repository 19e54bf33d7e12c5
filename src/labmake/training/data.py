"""A phase's data: chat records in, token ids and labels out, in the batches the loop runs.

A phase reads a chat dataset (JSON lines with ``messages``), renders every conversation with
the student's own chat template and takes the loss on the assistant's tokens (``loss_on:
assistant``) or on every token (``all``). The assistant spans are found by rendering prefixes
of the conversation, so any template where adding a turn only appends text works. Samples over
``max_seq_len`` are dropped or truncated (``over_length``) and counted in the metrics.

With ``packing`` each micro-batch is one unpadded row whose positions restart per sample, which
transformers turns into a block-diagonal attention mask (:func:`pack`): no compute is spent on
padding. Which samples go into which step is planned up front from the phase's seeded
generator (:func:`plan_steps`), so a resumed run sees the same batches as one never stopped.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labmake.core.artifacts import iter_jsonl
from labmake.core.config import PhaseConfig

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's ignore_index)


class TrainError(ValueError):
    """Bad training input (empty or malformed dataset, unusable chat template)."""


@dataclass(frozen=True)
class Sample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX where no loss is taken, else the token id itself


@dataclass
class DataStats:
    records: int = 0  # records read from the phase's dataset
    heldout: int = 0  # of those, held out of training to pick the best checkpoint
    replayed: int = 0  # records drawn from earlier phases' datasets
    dropped_too_long: int = 0  # longer than max_seq_len after the template (over_length: drop)
    truncated_too_long: int = 0  # longer than max_seq_len, cut to it (over_length: truncate)
    dropped_no_assistant: int = 0  # nothing to learn from (no labelled token left)
    used: int = 0  # training samples


# --------------------------------------------------------------------------- encoding


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=generation_prompt
    )
    if not isinstance(text, str):
        raise TrainError("the tokenizer's chat template did not render text")
    return text


def assistant_spans(
    tokenizer: Any, messages: list[dict[str, str]]
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the assistant wrote in it.

    For assistant message i, the text between rendering messages[:i] with the generation
    prompt and rendering messages[:i+1] is what the model must produce (its answer and the
    template's end-of-turn marker).
    """
    full = _render(tokenizer, messages, generation_prompt=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], generation_prompt=True)
        upto = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise TrainError(
                "the chat template is not prefix-stable: rendering the first turns of a "
                "conversation does not give the start of the whole rendering, so the "
                "assistant's tokens cannot be located. Use a template where adding a turn "
                "only appends text (e.g. the model's own Gemma/ChatML template)"
            )
        if len(upto) > len(before):
            spans.append((len(before), len(upto)))
    return full, spans


def encode(tokenizer: Any, messages: list[dict[str, str]], loss_on: str = "assistant") -> Sample:
    """Token ids of the rendered conversation; labels on the assistant's tokens only, or on
    every token with ``loss_on="all"`` (LAB's knowledge phase may learn the whole text)."""
    text, spans = assistant_spans(tokenizer, messages)
    if loss_on == "all":
        # Still ask for an assistant turn: a sample without an answer is not a conversation.
        spans = [(0, len(text))] if spans else []
    elif loss_on != "assistant":
        raise TrainError(f"loss_on {loss_on!r} is not 'assistant' or 'all'")
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise TrainError(
            "the student's tokenizer gives no character offsets; labmake needs a fast "
            "tokenizer (a tokenizer.json in the model folder)"
        ) from None
    ids = list(enc["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    for j, (start, end) in enumerate(enc["offset_mapping"]):
        for s, e in spans:
            # a token belongs to the answer if it overlaps it (a zero-width token: starts in it)
            if (start < e and end > s) if end > start else s <= start < e:
                labels[j] = ids[j]
                break
    return Sample(tuple(ids), tuple(labels))


# --------------------------------------------------------------------------- records


def read_dataset(path: Path) -> list[dict[str, Any]]:
    """The records of a chat dataset; every record must carry a list of messages."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: dataset not found; run the mix stage first (snakemake {path})")
    records = []
    try:
        for n, record in enumerate(iter_jsonl(path), start=1):
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not all(
                isinstance(m, dict)
                and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)
                for m in messages
            ):
                raise TrainError(
                    f"{path}: record {n} has no valid 'messages' (a list of {{role, content}}); "
                    "rebuild the dataset with the mix stage"
                )
            records.append(record)
    except json.JSONDecodeError as exc:
        raise TrainError(
            f"{path}: not valid JSON lines ({exc}); rebuild it with the mix stage"
        ) from None
    return records


def draw_replay(pool: Sequence[Any], count: int, rng: random.Random) -> list[Any]:
    """``count`` records from ``pool``: without repeats while it lasts, then another round."""
    drawn: list[Any] = []
    while pool and len(drawn) < count:
        drawn.extend(rng.sample(list(pool), min(len(pool), count - len(drawn))))
    return drawn


def prepare_samples(
    tokenizer: Any,
    records: Iterable[dict[str, Any]],
    max_seq_len: int,
    stats: DataStats | None = None,
    *,
    loss_on: str = "assistant",
    over_length: str = "drop",
) -> list[Sample]:
    """Encode records. Over-long ones are dropped or cut to ``max_seq_len`` (``over_length``),
    answer-less ones dropped; every such record is counted in ``stats``, never skipped quietly."""
    if over_length not in ("drop", "truncate"):
        raise TrainError(f"over_length {over_length!r} is not 'drop' or 'truncate'")
    stats = stats if stats is not None else DataStats()
    samples = []
    for record in records:
        sample = encode(tokenizer, record["messages"], loss_on)
        if len(sample.input_ids) > max_seq_len:
            if over_length == "drop":
                stats.dropped_too_long += 1
                continue
            stats.truncated_too_long += 1
            sample = Sample(sample.input_ids[:max_seq_len], sample.labels[:max_seq_len])
        if all(label == IGNORE_INDEX for label in sample.labels[1:]):
            stats.dropped_no_assistant += 1
        else:
            samples.append(sample)
    return samples


def split_heldout(
    records: Sequence[dict[str, Any]], fraction: float, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, held-out): a seeded ``fraction`` of the records, at least one when the fraction
    is positive, never all of them. The held-out ones are not trained on."""
    n = min(max(round(fraction * len(records)), 1), len(records) - 1) if fraction > 0 else 0
    picked = set(rng.sample(range(len(records)), n)) if n > 0 else set()
    train = [r for i, r in enumerate(records) if i not in picked]
    heldout = [r for i, r in enumerate(records) if i in picked]
    return train, heldout


# --------------------------------------------------------------------------- batches


def collate(
    samples: Sequence[Sample], pad_id: int, width: int | None = None
) -> dict[str, torch.Tensor]:
    """One batch, right-padded to its longest sample (or to ``width``, as naive loops do)."""
    width = width or max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(samples: Sequence[Sample]) -> dict[str, torch.Tensor | None]:
    """One batch row holding every sample back to back: no padding at all.

    Positions restart at 0 for each sample. With no attention mask given, transformers (5.x)
    reads the restarts in ``position_ids`` as sample boundaries and builds a block-diagonal
    causal mask (sliding windows included) for the eager and sdpa kernels, so no token attends
    across samples. A sample's first token is not predicted from the one before it.
    """
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for s in samples:
        ids.extend(s.input_ids)
        labels.append(IGNORE_INDEX)
        labels.extend(s.labels[1:])
        positions.extend(range(len(s.input_ids)))
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "attention_mask": None,
        "labels": torch.tensor([labels], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
    }


def make_batch(
    samples: Sequence[Sample], pad_id: int, packing: bool
) -> dict[str, torch.Tensor | None]:
    return pack(samples) if packing else collate(samples, pad_id)


def to_device(batch: dict[str, torch.Tensor | None], device: Any) -> dict[str, Any]:
    """``batch`` with every tensor moved to ``device`` (an absent attention mask stays absent)."""
    return {k: v.to(device) if v is not None else None for k, v in batch.items()}


def plan_steps(n_samples: int, phase: PhaseConfig, rng: random.Random) -> list[list[list[int]]]:
    """Sample indices for every optimizer step: steps -> micro-batches -> indices.

    Each epoch is a fresh shuffle. ``max_steps`` (if set) wins over ``epochs``; then the data
    is cycled as often as needed.
    """
    per_step = phase.batch_size * phase.grad_accum
    if phase.max_steps is not None:
        n_steps = phase.max_steps
        n_indices = n_steps * per_step
    else:
        n_indices = phase.epochs * n_samples
        n_steps = math.ceil(n_indices / per_step)
    stream: list[int] = []
    while len(stream) < n_indices:
        order = list(range(n_samples))
        rng.shuffle(order)
        stream.extend(order)
    stream = stream[:n_indices]
    micro = [stream[i : i + phase.batch_size] for i in range(0, len(stream), phase.batch_size)]
    return [micro[i : i + phase.grad_accum] for i in range(0, len(micro), phase.grad_accum)][
        :n_steps
    ]
