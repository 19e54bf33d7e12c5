"""The training loss, and the held-out scores that pick a phase's checkpoint.

Efficiency on a CPU: the output layer of a large vocabulary (262k rows for Gemma 3) dominates,
so logits are computed only at the positions that carry loss (:func:`loss_at_labels`). The
scores (:func:`heldout_loss`, :func:`evaluation_nll`) take the same loss one sample at a time,
so they do not depend on how samples would be batched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from labmake.training.data import IGNORE_INDEX, Sample, collate, to_device


def loss_at_labels(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled tokens, and their number.

    The output layer runs only on the hidden states that predict a labelled token (the
    model's ``logits_to_keep`` mask): with a 262k vocabulary that layer costs more than the
    transformer body. The call goes through the model's own forward, so DDP/FSDP wrappers see
    it. Matches the model's ``forward(labels=...)`` loss times the token count.
    """
    targets = labels[:, 1:]
    where = targets != IGNORE_INDEX
    # The state at t predicts token t+1; the last position predicts nothing.
    keep = F.pad(where, (0, 1), value=False)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        logits_to_keep=keep,
    )
    logits = out.logits.reshape(-1, out.logits.shape[-1])
    loss = F.cross_entropy(logits.float(), targets[where], reduction="sum")
    return loss, int(where.sum())


def label_count(sample: Sample) -> int:
    """Tokens that carry loss in ``sample`` (the first token is never predicted)."""
    return sum(1 for label in sample.labels[1:] if label != IGNORE_INDEX)


def sample_losses(
    model: Any, samples: Sequence[Sample], accelerator: Any | None = None
) -> list[tuple[float, int]]:
    """Per sample: the summed NLL of its labelled tokens and their number (no gradients).

    One sample per forward, unpadded, so every value is exact and independent of batching.
    With several processes each scores every n-th sample on its own copy of the weights (the
    unwrapped module: no collective per forward, so uneven shares cannot hang) and the sums
    are then shared, so every process returns the same list.
    """
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    net = accelerator.unwrap_model(model) if accelerator else model
    device = accelerator.device if accelerator else next(net.parameters()).device
    autocast = accelerator.autocast if accelerator else contextlib.nullcontext
    was_training = net.training
    net.eval()
    sums = torch.zeros((2, len(samples)), dtype=torch.float64)
    with torch.no_grad():
        for i in range(rank, len(samples), world):
            batch = collate([samples[i]], pad_id=0)  # one sample: nothing is padded
            with autocast():
                loss, n = loss_at_labels(net, **to_device(batch, device))
            sums[0, i], sums[1, i] = float(loss), n
    net.train(was_training)
    if world > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
    return [(float(loss), int(n)) for loss, n in zip(sums[0], sums[1], strict=True)]


def heldout_loss(model: Any, samples: Sequence[Sample], *, accelerator: Any = None) -> float:
    """Mean cross-entropy per labelled token over ``samples`` (the training objective)."""
    losses = sample_losses(model, samples, accelerator)
    return sum(loss for loss, _ in losses) / max(sum(n for _, n in losses), 1)


def evaluation_nll(model: Any, samples: Sequence[Sample], *, accelerator: Any = None) -> float:
    """The evaluation stage's headline score: the mean over items of each reference answer's
    mean NLL per token (what build/eval/report.json's overall reference_nll averages)."""
    per_item = [loss / n for loss, n in sample_losses(model, samples, accelerator) if n]
    return sum(per_item) / max(len(per_item), 1)
