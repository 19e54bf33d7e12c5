"""Drift from the base: how far a model's next-token distributions moved on text the base wrote.

The reference (:mod:`labmake.evaluation.retention` writes it, one JSON record per prompt) holds
token ids -- a general prompt and a continuation the base sampled after it -- and, for every
continuation position, the base's ``top_k`` most likely next tokens with their log-probabilities
(over the whole vocabulary). For a model M, at each such position:

- ``kl``: KL(base || M) between the two next-token distributions coarsened to k + 1 outcomes
  (the base's top-k tokens, and "any other token"). Coarsening never increases a KL, so this is
  a lower bound of the full-vocabulary KL, close to it when the top k hold most of the base's
  mass; 0 when M predicts exactly what the base predicts.
- ``nll``: -log M(the token the base sampled). Averaged over continuations sampled from the base
  at temperature 1, M's mean minus the base's mean estimates the per-token KL between the two
  models' distributions over whole continuations (the base's own text, scored by M).

A record's scores are the means over its continuation positions; the report bootstraps over
records (prompts). The training loop uses the same numbers to weigh drift into the choice of a
checkpoint (``train.phases[].retention_weight``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

_FLOOR = 1e-12  # the "any other token" mass is never taken as exactly 0 (log of 0)


def position_scores(
    logq_top: np.ndarray, logq_target: np.ndarray, ref_top: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per position: the coarsened KL(base || M) and M's NLL of the base's token.

    ``logq_top`` (T, k): M's log-probabilities of the base's top-k tokens; ``logq_target`` (T,):
    M's log-probability of the token the base sampled; ``ref_top`` (T, k): the base's
    log-probabilities of its top-k tokens.
    """
    logp = np.asarray(ref_top, dtype=np.float64)
    logq = np.asarray(logq_top, dtype=np.float64)
    p = np.exp(logp)
    head = (p * (logp - logq)).sum(axis=1)
    p_rest = np.clip(1.0 - p.sum(axis=1), _FLOOR, 1.0)
    q_rest = np.clip(1.0 - np.exp(logq).sum(axis=1), _FLOOR, 1.0)
    kl = head + p_rest * (np.log(p_rest) - np.log(q_rest))
    return np.maximum(kl, 0.0), -np.asarray(logq_target, dtype=np.float64)


def record_scores(record: dict[str, Any], logprobs: np.ndarray) -> dict[str, float]:
    """A record's mean KL and NLL from M's log-probabilities ``logprobs`` (T, vocab) at its
    continuation positions (row t predicts the continuation's token t)."""
    start = record["start"]
    targets = np.asarray(record["ids"][start:], dtype=np.int64)
    top = np.asarray(record["top_ids"], dtype=np.int64)
    logq_top = np.take_along_axis(logprobs, top, axis=1)
    logq_target = logprobs[np.arange(len(targets)), targets]
    kl, nll = position_scores(logq_top, logq_target, np.asarray(record["top_logprobs"]))
    return {"kl": float(kl.mean()), "nll": float(nll.mean())}


def hf_logprobs(model: Any, ids: Sequence[int], start: int, device: Any = None) -> np.ndarray:
    """A Hugging Face model's log-probabilities (float64, T x vocab) at the positions that
    predict ``ids[start:]``: one unpadded forward pass, the output layer only where needed."""
    import torch
    import torch.nn.functional as F

    device = device or next(model.parameters()).device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    keep = torch.zeros_like(input_ids, dtype=torch.bool)
    keep[0, start - 1 : len(ids) - 1] = True
    out = model(input_ids=input_ids, use_cache=False, logits_to_keep=keep)
    logits = out.logits.reshape(-1, out.logits.shape[-1]).double()
    return F.log_softmax(logits, dim=-1).cpu().numpy()


def drift(
    model: Any, records: Sequence[dict[str, Any]], *, accelerator: Any = None
) -> list[dict[str, float]]:
    """Per record: mean KL to the base and mean NLL of the base's continuation (no gradients).

    Under a distributed launch the unwrapped module scores every record in each process (no
    collective per forward), so all processes get the same numbers.
    """
    import torch

    net = accelerator.unwrap_model(model) if accelerator else model
    device = accelerator.device if accelerator else next(net.parameters()).device
    autocast = accelerator.autocast if accelerator else contextlib.nullcontext
    was_training = net.training
    net.eval()
    scores = []
    with torch.no_grad():
        for record in records:
            with autocast():
                logprobs = hf_logprobs(net, record["ids"], record["start"], device)
            scores.append(record_scores(record, logprobs))
    net.train(was_training)
    return scores


def mean_kl(scores: Sequence[dict[str, float]]) -> float:
    """The mean over records of their mean KL: the number ``retention_weight`` multiplies."""
    return sum(s["kl"] for s in scores) / max(len(scores), 1)
