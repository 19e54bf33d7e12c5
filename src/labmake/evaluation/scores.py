"""Scores of one answer or one conversation: reference NLL, token F1 and ROUGE-L.

The NLL is the trainer's own loss (same template, same masking), so a lower number means the
training objective generalised to held-out items; F1 and ROUGE-L compare greedy answers with
the reference on the filter stage's tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake.core.text import rouge_l as _rouge_l_tokens
from labmake.core.text import tokens


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 on the same tokens as token F1 (the filter stage's implementation)."""
    return _rouge_l_tokens(tokens(prediction), tokens(reference))


def conversation_nll(
    model: Any, tokenizer: Any, conversations: Sequence[list[dict]]
) -> list[float]:
    """Per conversation: mean NLL (nats/token) of its assistant turns given the rest.

    The scored tokens are exactly those the trainer takes its loss on (same template, same
    masking), so a lower number means the training objective generalised to these items.
    """
    from labmake.training.data import encode
    from labmake.training.loss import sample_losses

    samples = [encode(tokenizer, messages) for messages in conversations]
    return [loss / max(n, 1) for loss, n in sample_losses(model, samples)]


def load_model(hf_dir: Path, phase_dirs: Sequence[Path] = ()) -> tuple[Any, Any]:
    from labmake.training.weights import load_tuned

    model, tokenizer = load_tuned(Path(hf_dir), [Path(p) for p in phase_dirs])
    model.eval()
    return model, tokenizer


def reference_nll(
    model_dir: Path, items: Sequence[dict[str, Any]], phase_dirs: Sequence[Path] = ()
) -> list[float]:
    """Per item: mean NLL of the reference answer under ``model_dir`` (+ phase adapters)."""
    model, tokenizer = load_model(model_dir, phase_dirs)
    return conversation_nll(model, tokenizer, [item["messages"] for item in items])
