"""Tuning and export: LoRA, the phases, and the GGUF files."""

from __future__ import annotations

from dataclasses import dataclass

from labmake.core.config.sources import NAME_PATTERN, QUANTIZATIONS
from labmake.core.schema import ConfigError, param


@dataclass(frozen=True)
class LoraConfig:
    r: int = param(8, help="LoRA rank", min=1)
    alpha: int = param(16, help="LoRA alpha", min=1)
    dropout: float = param(0.0, help="LoRA dropout", min=0.0, max=1.0)
    target_modules: tuple[str, ...] = param(
        ("q_proj", "k_proj", "v_proj", "o_proj"), help="modules given adapters", minlength=1
    )


@dataclass(frozen=True)
class PhaseConfig:
    name: str = param(help="the phase's name (its checkpoint folder)", regex=NAME_PATTERN)
    dataset: str = param(help="knowledge | skills", allowed=["knowledge", "skills"])
    epochs: int = param(1, help="passes over the data (unless max_steps)", min=1)
    max_steps: int | None = param(None, help="optimizer steps; null: from epochs", min=1)
    learning_rate: float = param(2e-4, help="peak learning rate", min=0.0)
    warmup_steps: int = param(0, help="linear warm-up steps", min=0)
    batch_size: int = param(4, help="samples per micro-batch", min=1)
    grad_accum: int = param(1, help="micro-batches per optimizer step", min=1)
    replay_ratio: float = param(
        0.0, help="share of the phase's samples replayed from earlier phases", min=0.0, max=1.0
    )
    method: str = param(
        "lora", help="lora: train an adapter; full: every weight", allowed=["lora", "full"]
    )
    loss_on: str = param(
        "assistant",
        help="assistant: the answers only; all: every token",
        allowed=["assistant", "all"],
    )
    checkpoint_every: int | None = param(
        None, help="steps between resumable checkpoints (and held-out losses)", min=1
    )
    heldout_fraction: float = param(
        0.0, help="share of the phase's records held out to pick the best step", min=0.0, max=0.5
    )
    # evaluation: the evaluation stage's reference NLL on build/data/eval.jsonl, the report's
    # headline (then optimistic, since the choice has seen those items). heldout_all: the
    # phase's own held-out records and the earlier phases' held-out records, weighed equally,
    # so a later phase keeps the checkpoint that learnt its data without forgetting theirs.
    select_by: str = param(
        "heldout_loss",
        help="what picks the kept checkpoint: heldout_loss, heldout_all or evaluation",
        allowed=["heldout_loss", "heldout_all", "evaluation"],
    )
    retention_weight: float = param(
        0.0,
        help="adds this times the drift from the base (KL, nats/token, on the retention "
        "prompts) to the score that picks the checkpoint",
        min=0.0,
    )
    lora: LoraConfig = param(help="the adapter (method: lora)", factory=LoraConfig)


@dataclass(frozen=True)
class TrainConfig:
    max_seq_len: int = param(256, help="tokens per sample", min=16)
    packing: bool = param(
        True, help="each micro-batch as one unpadded row, attention kept per sample"
    )
    over_length: str = param(
        "drop", help="samples over max_seq_len: drop or truncate", allowed=["drop", "truncate"]
    )
    # Each optimizer step is split between the processes (gloo on CPUs, NCCL on GPUs).
    processes: str | int = param(
        "auto",
        help="data-parallel processes: auto = one per visible CUDA GPU (1 on a CPU), or a count",
        allowed=["auto"],
        min=1,
    )
    phases: tuple[PhaseConfig, ...] = param(
        (), help="the training phases, in order, each from the last", minlength=1
    )

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"params.yaml: train.phases has repeated names {names}; give each phase its "
                "own name"
            )


@dataclass(frozen=True)
class ExportConfig:
    quantizations: tuple[str, ...] = param(
        ("Q4_K_M", "Q5_K_M", "Q8_0"),
        help="GGUF types written besides F16",
        minlength=1,
        item={"allowed": list(QUANTIZATIONS)},
    )

    def __post_init__(self) -> None:
        if len(set(self.quantizations)) != len(self.quantizations):
            raise ConfigError(
                f"params.yaml: export.quantizations lists a type twice {list(self.quantizations)}"
            )
