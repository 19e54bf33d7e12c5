"""The weights a phase trains and leaves behind: a LoRA adapter or the whole model.

A phase trains a fresh LoRA adapter (``method: lora``) or every weight (``full``) on the base
with the earlier phases applied (:func:`load_tuned`). What it saves is the adapter in peft's
layout or, for a full tune, the whole model in Hugging Face layout, written so that the same
weights always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from labmake.core.artifacts import read_json, write_json
from labmake.core.config import LoraConfig, PhaseConfig
from labmake.training.data import TrainError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FULL_WEIGHTS = "model.safetensors"  # a full-tune phase saves the whole model (HF layout)


def _attn_implementation(base_dir: Path) -> str | None:
    from transformers import AutoConfig

    model_type = getattr(AutoConfig.from_pretrained(base_dir), "model_type", "")
    # transformers recommends eager attention for training Gemma 2/3; others keep the default.
    return "eager" if model_type.startswith("gemma") else None


def phase_weights(phase_dir: Path) -> Path:
    """The weights file a finished phase wrote: its LoRA adapter or, for a full tune, the model."""
    for name in (ADAPTER_WEIGHTS, FULL_WEIGHTS):
        if (Path(phase_dir) / name).is_file():
            return Path(phase_dir) / name
    raise TrainError(f"{phase_dir}: no {ADAPTER_WEIGHTS} or {FULL_WEIGHTS}; train that phase first")


def load_tuned(
    base_dir: Path, phase_dirs: Sequence[Path], dtype: torch.dtype = torch.float32
) -> tuple[Any, Any]:
    """The base model with each phase applied in order, and the base's tokenizer.

    A LoRA phase's adapter is merged in; a full-tune phase holds the whole model, so loading
    starts from the last such phase and merges only the adapters after it.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = Path(base_dir)
    if not (base_dir / "config.json").is_file():
        raise TrainError(
            f"{base_dir}: not a Hugging Face model folder (no config.json); build the base model first"
        )
    start, adapters = base_dir, []
    for phase_dir in map(Path, phase_dirs):
        if phase_weights(phase_dir).name == FULL_WEIGHTS:
            start, adapters = phase_dir, []
        else:
            adapters.append(phase_dir)
    model = AutoModelForCausalLM.from_pretrained(
        start, dtype=dtype, attn_implementation=_attn_implementation(base_dir)
    )
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    for phase_dir in adapters:
        model = PeftModel.from_pretrained(model, str(phase_dir)).merge_and_unload()
    return model, tokenizer


def add_lora(model: Any, lora: LoraConfig) -> Any:
    """Wrap ``model`` in a fresh LoRA adapter; only the adapter's weights require gradients."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    peft_config = PeftLoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=sorted(lora.target_modules),
    )
    return get_peft_model(model, peft_config)


def prepare_model(model: Any, phase: PhaseConfig) -> Any:
    """The model as the phase trains it: a fresh LoRA adapter, or every weight trainable."""
    if phase.method == "lora":
        return add_lora(model, phase.lora)
    if phase.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    raise TrainError(f"phase '{phase.name}': method {phase.method!r} is not lora or full")


def save_adapter(model: Any, directory: Path) -> None:
    """Save the adapter so that the same weights give the same bytes."""
    model.save_pretrained(str(directory))
    (directory / "README.md").unlink(missing_ok=True)  # peft's model-card template: not ours
    config_path = directory / ADAPTER_CONFIG
    config = read_json(config_path)
    # peft writes target_modules from a set, in hash order; sort every list it holds.
    config = {
        k: sorted(v) if isinstance(v, list) and all(isinstance(x, str) for x in v) else v
        for k, v in config.items()
    }
    write_json(config_path, config)


def save_phase_weights(model: Any, phase: PhaseConfig, directory: Path) -> None:
    """Save what ``phase`` trained: the whole model for a full tune, else the adapter."""
    if phase.method == "full":
        # The whole model in HF layout (safetensors + config.json); load_tuned starts from it.
        model.save_pretrained(str(directory), safe_serialization=True)
    else:
        save_adapter(model, directory)
