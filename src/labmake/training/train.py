"""Training: one phase at a time, each starting from the base plus the earlier phases.

A phase reads a chat dataset (JSON lines with ``messages``), renders every conversation with
the student's own chat template and takes the loss on the assistant's tokens (``loss_on:
assistant``) or on every token (``all``). The assistant spans are found by rendering prefixes
of the conversation, so any template where adding a turn only appends text works. A phase
trains a fresh LoRA adapter (``method: lora``) or every weight (``full``) on the base with the
earlier phases applied (:func:`load_tuned`). Samples over ``max_seq_len`` are dropped or
truncated (``over_length``) and counted in the metrics.

Efficiency on a CPU: the output layer of a large vocabulary (262k rows for Gemma 3) dominates,
so logits are computed only at the positions that carry loss (:func:`loss_at_labels`); with
``packing`` each micro-batch is one unpadded row whose positions restart per sample, which
transformers turns into a block-diagonal attention mask (:func:`pack`); frozen weights get no
gradient. bf16 autocast on a GPU that has it, fp32 elsewhere (:func:`mixed_precision`).

Every ``checkpoint_every`` steps the state is saved for resuming (:mod:`labmake.training.resume`)
and the loss on a held-out share of the phase's records is taken; the phase keeps the weights
of the best step, not simply the last. Everything random is seeded from the build seed and the
phase name: two runs with the same inputs, interrupted or not, write byte-identical weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from labmake import __version__
from labmake.core.artifacts import atomic_dir, iter_jsonl, read_json, sha256_file, write_json
from labmake.core.config import LoraConfig, PhaseConfig
from labmake.core.hashing import derive_seed
from labmake.core.progress import track
from labmake.training.resume import (
    Progress,
    ResumeStore,
    fingerprint,
    load_trainable,
    trainable_state,
)

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's ignore_index)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
FULL_WEIGHTS = "model.safetensors"  # a full-tune phase saves the whole model (HF layout)
METRICS = "metrics.json"
PHASE_DONE = "labmake_phase.json"  # written last: its presence marks a complete checkpoint
BASE_INFO = "labmake_base.json"
MAX_GRAD_NORM = 1.0
LAST_K = 5  # metrics report the mean loss of the last k steps (less noisy than the last one)


class TrainError(ValueError):
    """Bad training input (empty or malformed dataset, unusable chat template)."""


# --------------------------------------------------------------------------- models


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


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- loss and loop


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


def mixed_precision(device: torch.device) -> str:
    """bf16 autocast where the device computes it natively (CUDA with bf16), else full fp32.

    The CPU stays in fp32: its bf16 matmuls are slower than fp32 on most x86 cores and the
    tiny test models' checks are written against fp32 numerics.
    """
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def make_accelerator() -> Any:
    """The accelerator of this process: one GPU or the CPU; under a distributed launch (see
    :mod:`labmake.training.launch`), one of several processes (NCCL on GPUs, gloo on CPUs)."""
    from accelerate import Accelerator, PartialState

    # cpu=True lets several CPU processes form a gloo group; without CUDA it changes nothing else.
    cpu = not torch.cuda.is_available()
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision(PartialState(cpu=cpu).device))


@dataclass(frozen=True)
class StepStats:
    loss: float  # mean cross-entropy over the step's labelled tokens
    loss_tokens: int
    input_tokens: int  # non-padding tokens seen


@dataclass
class TrainResult:
    history: list[StepStats]
    evals: list[dict[str, Any]]  # {"step", "heldout_loss"[, "evaluation_nll"]} per checkpoint
    chosen_step: int  # the step whose weights the model holds on return
    resumed_from: int  # the step a saved state was resumed at; 0 for a fresh start


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
                loss, n = loss_at_labels(net, **_to(batch, device))
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


def _to(batch: dict[str, torch.Tensor | None], device: Any) -> dict[str, Any]:
    return {k: v.to(device) if v is not None else None for k, v in batch.items()}


def checkpoint_steps(n_steps: int, every: int | None) -> set[int]:
    """Steps after which the state is saved and the held-out loss taken; always the last."""
    steps = set(range(every, n_steps + 1, every)) if every else set()
    return steps | {n_steps}


def process_share(micro_batches: Sequence[Sequence[int]], rank: int, world: int) -> list[list[int]]:
    """This process's part of one optimizer step: every micro-batch dealt out round-robin.

    Each process gets as many micro-batches as the step has (some may be empty when a
    micro-batch has fewer samples than there are processes), so all run the same number of
    backward passes, as DDP requires. One process gets the whole step.
    """
    return [list(idx[rank::world]) for idx in micro_batches]


SELECT_KEYS = {"heldout_loss": "heldout_loss", "evaluation": "evaluation_nll"}


def train(
    model: Any,
    samples: Sequence[Sample],
    plan: Sequence[Sequence[Sequence[int]]],
    phase: PhaseConfig,
    *,
    pad_id: int,
    packing: bool = True,
    heldout: Sequence[Sample] = (),
    evaluation: Sequence[Sample] = (),
    accelerator: Any | None = None,
    resume: ResumeStore | None = None,
    on_step: Callable[[int, StepStats], None] | None = None,
) -> TrainResult:
    """Run the planned optimizer steps on the trainable weights of ``model``.

    At every checkpoint step (``phase.checkpoint_every``, and the last step) the loss on
    ``heldout`` (and, with ``phase.select_by: evaluation``, the evaluation score on
    ``evaluation``) is taken and, with ``resume``, the whole state saved. On return the model
    holds the weights of the best checkpoint by ``phase.select_by`` (the last step when there is
    nothing to score). A state found in ``resume`` is restored first and training continues
    from it; the result is the same, bit for bit, as a run never stopped.

    With several processes (a distributed launch) each step's samples are shared out by
    :func:`process_share`; every process scales its loss so that the averaged gradient equals
    the one-process gradient of the whole step: the same training, N times the throughput.
    """
    from transformers import get_constant_schedule_with_warmup

    accelerator = accelerator or make_accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    select_key = SELECT_KEYS[phase.select_by]
    scored = evaluation if phase.select_by == "evaluation" else heldout
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=phase.learning_rate, betas=(0.9, 0.95), weight_decay=0.0
    )
    # Constant after warm-up: LAB found decay in intermediate phases hurt the later ones.
    scheduler = get_constant_schedule_with_warmup(optimizer, phase.warmup_steps)
    progress, best = Progress(), None
    restored = resume.load(model, optimizer, scheduler) if resume else None
    if restored:
        progress, best = restored
        log.info("phase %s: resuming at step %d of %d", phase.name, progress.step, len(plan))
    resumed_from = progress.step
    # The raw optimizer and scheduler stay referenced for saving; prepare() wraps them.
    model, opt, sched = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    checkpoints = checkpoint_steps(len(plan), phase.checkpoint_every)
    for step in range(progress.step + 1, len(plan) + 1):
        step_plan = plan[step - 1]
        # Normalise by the whole step's token count (all processes) so grad_accum and the
        # number of processes give the same gradient as one big batch.
        step_tokens = sum(label_count(samples[i]) for idx in step_plan for i in idx)
        local = torch.zeros(2, dtype=torch.float64)  # this process's loss sum, input tokens
        share = process_share(step_plan, rank, world)
        for k, idx in enumerate(share):
            # An empty share still runs (on a sample, weighted 0): DDP's gradient all-reduce
            # needs every process in every backward.
            batch = make_batch([samples[i] for i in (idx or step_plan[k][:1])], pad_id, packing)
            # Gradients are all-reduced once per step, after the last micro-batch.
            sync = k == len(share) - 1
            with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                with accelerator.autocast():
                    loss_sum, _ = loss_at_labels(model, **_to(batch, accelerator.device))
                # DDP averages gradients over processes: scale by their number to get the sum.
                accelerator.backward(loss_sum * world / step_tokens if idx else loss_sum * 0.0)
            if idx:
                local[0] += float(loss_sum.detach())
                mask = batch["attention_mask"]
                local[1] += int(batch["input_ids"].numel() if mask is None else mask.sum())
        accelerator.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            local = accelerator.reduce(local.to(accelerator.device), "sum").cpu()
        stats = StepStats(
            loss=float(local[0]) / step_tokens,
            loss_tokens=step_tokens,
            input_tokens=int(local[1]),
        )
        progress.step = step
        progress.history.append(dataclasses.asdict(stats))
        if step in checkpoints:
            if scored:
                # Rounded as stored, so a resumed run compares the same numbers.
                entry: dict[str, Any] = {"step": step}
                if heldout:
                    entry["heldout_loss"] = round(
                        heldout_loss(model, heldout, accelerator=accelerator), 6
                    )
                if phase.select_by == "evaluation":
                    entry["evaluation_nll"] = round(
                        evaluation_nll(model, evaluation, accelerator=accelerator), 6
                    )
                progress.evals.append(entry)
                value = entry[select_key]
                if progress.best_step is None or value < _eval_at(
                    progress, progress.best_step, select_key
                ):
                    progress.best_step = step
                    best = trainable_state(accelerator.unwrap_model(model))
                log.info(
                    "phase %s: step %d %s",
                    phase.name,
                    step,
                    ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "step"),
                )
            if resume and phase.checkpoint_every:
                if accelerator.is_main_process:  # one writer when several processes train
                    resume.save(
                        progress, accelerator.unwrap_model(model), optimizer, scheduler, best
                    )
                accelerator.wait_for_everyone()
        if on_step:
            on_step(step, stats)
    model.eval()
    chosen = progress.best_step if progress.best_step is not None else len(plan)
    if chosen != len(plan) and best is not None:
        load_trainable(accelerator.unwrap_model(model), best)
    return TrainResult(
        history=[StepStats(**h) for h in progress.history],
        evals=progress.evals,
        chosen_step=chosen,
        resumed_from=resumed_from,
    )


def _eval_at(progress: Progress, step: int, key: str) -> float:
    return next(e[key] for e in progress.evals if e["step"] == step)


# --------------------------------------------------------------------------- one phase

# Set only by tests: SIGKILL the training process right after this optimizer step, to prove
# that a killed phase resumes from its last checkpoint (a real kill -9: no cleanup runs).
KILL_AT_STEP_ENV = "LABMAKE_TEST_KILL_AT_STEP"


def _save_adapter(model: Any, directory: Path) -> None:
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


def _save_phase(model: Any, phase: PhaseConfig, directory: Path) -> None:
    if phase.method == "full":
        # The whole model in HF layout (safetensors + config.json); load_tuned starts from it.
        model.save_pretrained(str(directory), safe_serialization=True)
    else:
        _save_adapter(model, directory)


def _phase_name(phase_dir: Path) -> str:
    done = Path(phase_dir) / PHASE_DONE
    return read_json(done)["phase"]["name"] if done.is_file() else Path(phase_dir).name


def _kill_hook() -> Callable[[int], None]:
    at = os.environ.get(KILL_AT_STEP_ENV)

    def hook(step: int) -> None:
        if at and step == int(at):
            log.warning("%s=%s: killing this process (SIGKILL)", KILL_AT_STEP_ENV, at)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _evaluation_samples(
    phase: PhaseConfig, tokenizer: Any, items_path: Path | None
) -> tuple[list[Sample], dict[str, Any] | None]:
    """The evaluation items that pick the checkpoint (``select_by: evaluation``), encoded as
    the evaluation stage scores them (whole conversation, loss on the reference answer)."""
    if phase.select_by != "evaluation":
        return [], None
    items = read_dataset(Path(items_path)) if items_path else []
    if not items:
        raise TrainError(
            f"phase '{phase.name}': select_by: evaluation needs the held-out items of "
            f"{items_path or 'build/data/eval.jsonl'}, and there are none. Set "
            "mix.eval_seeds_per_leaf or mix.eval_generated_per_leaf >= 1 in params.yaml, or "
            "select_by: heldout_loss"
        )
    log.warning(
        "phase %s: the checkpoint is chosen on the evaluation items, so the report's score of "
        "this phase (and of the tuned model) is optimistic",
        phase.name,
    )
    samples = [encode(tokenizer, item["messages"]) for item in items]
    entry = {"path": str(items_path), "sha256": sha256_file(Path(items_path)), "items": len(items)}
    return samples, entry


def run_phase(
    phase: PhaseConfig,
    *,
    max_seq_len: int,
    seed: int,
    base_dir: Path,
    parent_dirs: Sequence[Path],
    dataset: Path,
    replay: Sequence[Path],
    out_dir: Path,
    packing: bool = True,
    over_length: str = "drop",
    resume_dir: Path | None = None,
    evaluation_items: Path | None = None,
) -> dict[str, Any]:
    """Train one phase from the base plus its parents; write ``out_dir``.

    ``out_dir`` receives the adapter (or, for ``method: full``, the whole model),
    ``metrics.json`` and, last, ``labmake_phase.json`` (provenance). In-progress state goes to
    ``resume_dir`` (default: ``.resume/<out_dir's name>`` beside ``out_dir``) every
    ``checkpoint_every`` steps; a re-run after a crash resumes from it, and it is removed when
    the phase is done. With ``phase.select_by: evaluation``, ``evaluation_items`` (the
    evaluation stage's build/data/eval.jsonl) scores every checkpoint. Run under a distributed
    launch (:mod:`labmake.training.launch`), every process calls this; the first one writes.
    Returns the metrics.
    """
    import peft
    from transformers import __version__ as transformers_version

    base_dir, dataset, out_dir = Path(base_dir), Path(dataset), Path(out_dir)
    resume_dir = Path(resume_dir) if resume_dir else out_dir.parent / ".resume" / out_dir.name
    phase_seed = derive_seed(seed, "train", phase.name)
    rng = random.Random(phase_seed)

    records = read_dataset(dataset)
    if not records:
        raise TrainError(
            f"{dataset}: empty, so phase '{phase.name}' has nothing to train on. The filter "
            "kept no samples for this phase's leaves: check build/filtered/*.stats.json, add "
            "seed examples or loosen the filter section of params.yaml"
        )
    stats = DataStats(records=len(records))
    # Its own generator, so holding out changes nothing else that is drawn.
    own, held = split_heldout(
        records, phase.heldout_fraction, random.Random(derive_seed(seed, "heldout", phase.name))
    )
    pool = [r for path in replay for r in read_dataset(Path(path))]
    wanted = round(phase.replay_ratio * len(own))
    replayed = draw_replay(pool, wanted, rng)
    if wanted and not pool:
        log.warning(
            "phase %s: replay_ratio %.2f but no earlier data to replay",
            phase.name,
            phase.replay_ratio,
        )
    stats.replayed = len(replayed)

    started = time.monotonic()
    model, tokenizer = load_tuned(base_dir, parent_dirs)
    log.info(
        "phase %s: loaded %s + %d parent phase(s) in %.1f s",
        phase.name,
        base_dir,
        len(parent_dirs),
        time.monotonic() - started,
    )
    prep = {"loss_on": phase.loss_on, "over_length": over_length}
    samples = prepare_samples(tokenizer, own + replayed, max_seq_len, stats, **prep)
    heldout = prepare_samples(tokenizer, held, max_seq_len, stats, **prep)
    stats.used, stats.heldout = len(samples), len(heldout)
    evaluation, evaluation_entry = _evaluation_samples(phase, tokenizer, evaluation_items)
    log.info(
        "phase %s: %d records (%d held out) + %d replayed -> %d training samples; over "
        "max_seq_len=%d: %d dropped, %d truncated; %d without an assistant turn dropped",
        phase.name,
        stats.records,
        len(held),
        stats.replayed,
        stats.used,
        max_seq_len,
        stats.dropped_too_long,
        stats.truncated_too_long,
        stats.dropped_no_assistant,
    )
    if not samples:
        raise TrainError(
            f"{dataset}: none of its {stats.records + stats.replayed} samples fits: "
            f"{stats.dropped_too_long} are longer than train.max_seq_len={max_seq_len} tokens, "
            f"{stats.dropped_no_assistant} have no assistant turn. Raise train.max_seq_len in "
            "params.yaml, set train.over_length: truncate, or shorten the samples "
            "(filter.max_answer_words)"
        )

    torch.manual_seed(phase_seed)  # the adapter's initial weights and dropout
    model = prepare_model(model, phase)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    plan = plan_steps(len(samples), phase, rng)
    accelerator = make_accelerator()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "phase %s: %s, %d steps x %d samples, %d trainable parameters, device %s, precision %s, "
        "%d process(es)",
        phase.name,
        phase.method,
        len(plan),
        phase.batch_size * phase.grad_accum,
        trainable,
        accelerator.device,
        accelerator.mixed_precision,
        accelerator.num_processes,
    )

    parent_weights = {_phase_name(p): sha256_file(phase_weights(p)) for p in parent_dirs}
    dataset_entry = {"path": str(dataset), "sha256": sha256_file(dataset)}
    replay_entries = [{"path": str(p), "sha256": sha256_file(Path(p))} for p in replay]
    base_info = base_dir / BASE_INFO
    base = read_json(base_info) if base_info.is_file() else None
    resume = ResumeStore(
        resume_dir,
        fingerprint(
            {
                "phase": dataclasses.asdict(phase),
                "seed": seed,
                "max_seq_len": max_seq_len,
                "packing": packing,
                "over_length": over_length,
                "base": base,
                "parents": parent_weights,
                "dataset": dataset_entry["sha256"],
                "replay": [e["sha256"] for e in replay_entries],
                "evaluation": evaluation_entry and evaluation_entry["sha256"],
                "labmake": __version__,
            }
        ),
    )

    started = time.monotonic()
    last = [started]
    kill_hook = _kill_hook()
    # One progress display: the first process speaks for all.
    shown = accelerator.is_main_process
    bar = track(f"train {phase.name}", len(plan), loss="-", tok_s="-") if shown else None
    with bar or contextlib.nullcontext(lambda **_: None) as advance:

        def on_step(step: int, s: StepStats) -> None:
            now = time.monotonic()
            tps = s.input_tokens / max(now - last[0], 1e-9)
            last[0] = now
            advance(loss=f"{s.loss:.4f}", tok_s=f"{tps:.0f}")
            kill_hook(step)

        result = train(
            model,
            samples,
            plan,
            phase,
            pad_id=pad_id,
            packing=packing,
            heldout=heldout,
            evaluation=evaluation,
            accelerator=accelerator,
            resume=resume,
            on_step=on_step,
        )
    elapsed = time.monotonic() - started
    done_here = len(plan) - result.resumed_from
    log.info(
        "phase %s: trained %d step(s) in %.1f s (%.2f s/step)%s",
        phase.name,
        done_here,
        elapsed,
        elapsed / max(done_here, 1),
        f", resumed at step {result.resumed_from}" if result.resumed_from else "",
    )

    history = result.history
    losses = [round(h.loss, 6) for h in history]
    k = min(LAST_K, len(losses))
    metrics = {
        "phase": phase.name,
        "method": phase.method,
        "steps": len(history),
        "loss": losses,
        "loss_tokens": [h.loss_tokens for h in history],
        "input_tokens": [h.input_tokens for h in history],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "mean_last_k_loss": round(sum(losses[-k:]) / k, 6),
        "last_k": k,
        "heldout_loss": result.evals,
        "chosen_step": result.chosen_step,
        "samples": dataclasses.asdict(stats),
        "trainable_parameters": trainable,
    }
    chosen_eval = next((e for e in result.evals if e["step"] == result.chosen_step), None)
    select_key = SELECT_KEYS[phase.select_by]
    provenance = {
        "phase": dataclasses.asdict(phase),
        "parents": [_phase_name(p) for p in parent_dirs],
        "parent_adapters": parent_weights,
        "base": base,
        "base_dir": str(base_dir),
        "dataset": dataset_entry,
        "replay": replay_entries,
        "evaluation_items": evaluation_entry,
        "processes": accelerator.num_processes,
        "seed": seed,
        "max_seq_len": max_seq_len,
        "packing": packing,
        "over_length": over_length,
        "selected_checkpoint": {
            "step": result.chosen_step,
            "of_steps": len(plan),
            "by": select_key if chosen_eval else "last_step",
            "heldout_loss": chosen_eval.get("heldout_loss") if chosen_eval else None,
            "heldout_samples": stats.heldout,
            **(
                {
                    "evaluation_nll": chosen_eval["evaluation_nll"] if chosen_eval else None,
                    "evaluation_items": len(evaluation),
                }
                if phase.select_by == "evaluation"
                else {}
            ),
        },
        "versions": {
            "labmake": __version__,
            "torch": torch.__version__,
            "transformers": transformers_version,
            "peft": peft.__version__,
        },
    }

    if accelerator.is_main_process:  # one writer when several processes train
        with atomic_dir(out_dir) as tmp:
            _save_phase(accelerator.unwrap_model(model), phase, tmp)
            write_json(tmp / METRICS, metrics)
            write_json(tmp / PHASE_DONE, provenance)  # last: marks the checkpoint complete
        resume.clear()
    accelerator.wait_for_everyone()
    log.info(
        "phase %s: wrote %s (loss %.4f -> %.4f; kept step %d of %d%s)",
        phase.name,
        out_dir,
        losses[0],
        metrics["mean_last_k_loss"],
        result.chosen_step,
        len(plan),
        f", {select_key} {chosen_eval[select_key]:.4f}" if chosen_eval else "",
    )
    return metrics
