"""Training: one LoRA phase at a time, each starting from the base plus the earlier phases.

A phase reads a chat dataset (JSON lines with ``messages``), renders every conversation with
the student's own chat template and takes the loss on assistant tokens only. The assistant
spans are found by rendering prefixes of the conversation, so any template where adding a
turn only appends text works. Phases chain: phase k trains a fresh adapter on the base with
the adapters of phases 1..k-1 merged in (:func:`load_tuned`).

Cost on a CPU is dominated by the output layer of a large vocabulary (262k rows for Gemma 3),
so logits are computed only at the positions that carry loss (:func:`loss_at_labels`).
Everything random is seeded from the build seed and the phase name; two runs with the same
inputs write byte-identical adapters.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import __version__
from .config import LoraConfig, PhaseConfig
from .io import atomic_dir, iter_jsonl, read_json, sha256_file, write_json
from .progress import track
from .teacher import derive_seed

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # the label of a token that carries no loss (PyTorch's ignore_index)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
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


def load_tuned(
    base_dir: Path, phase_dirs: Sequence[Path], dtype: torch.dtype = torch.float32
) -> tuple[Any, Any]:
    """The base model with each phase's LoRA adapter merged in, in order, and its tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = Path(base_dir)
    if not (base_dir / "config.json").is_file():
        raise TrainError(
            f"{base_dir}: not a Hugging Face model folder (no config.json); build the base model first"
        )
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=dtype, attn_implementation=_attn_implementation(base_dir)
    )
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    for phase_dir in phase_dirs:
        if not (Path(phase_dir) / ADAPTER_WEIGHTS).is_file():
            raise TrainError(f"{phase_dir}: no {ADAPTER_WEIGHTS}; train that phase first")
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


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Sample:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # IGNORE_INDEX where no loss is taken, else the token id itself


@dataclass
class DataStats:
    records: int = 0  # records read from the phase's dataset
    replayed: int = 0  # records drawn from earlier phases' datasets
    dropped_too_long: int = 0  # longer than max_seq_len after the template: dropped, not cut
    dropped_no_assistant: int = 0  # nothing to learn from (no assistant turn)
    used: int = 0


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


def encode(tokenizer: Any, messages: list[dict[str, str]]) -> Sample:
    """Token ids of the rendered conversation; labels only on the assistant's tokens."""
    text, spans = assistant_spans(tokenizer, messages)
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
    tokenizer: Any, records: Iterable[dict[str, Any]], max_seq_len: int, stats: DataStats
) -> list[Sample]:
    """Encode records; over-long and answer-less ones are dropped and counted in ``stats``."""
    samples = []
    for record in records:
        sample = encode(tokenizer, record["messages"])
        if len(sample.input_ids) > max_seq_len:
            stats.dropped_too_long += 1
        elif all(label == IGNORE_INDEX for label in sample.labels[1:]):
            stats.dropped_no_assistant += 1
        else:
            samples.append(sample)
    stats.used = len(samples)
    return samples


def collate(samples: Sequence[Sample], pad_id: int) -> dict[str, torch.Tensor]:
    """One batch, right-padded to its longest sample only."""
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for row, s in enumerate(samples):
        n = len(s.input_ids)
        ids[row, :n] = torch.tensor(s.input_ids)
        labels[row, :n] = torch.tensor(s.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


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


def _causal_lm(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def loss_at_labels(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over labelled tokens, and their number.

    Runs the transformer body once, then the output layer only on the hidden states that
    predict a labelled token: with a 262k vocabulary that layer costs more than the body.
    Matches the model's own ``forward(labels=...)`` loss times the token count.
    """
    lm = _causal_lm(model)
    hidden = lm.get_decoder()(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False
    ).last_hidden_state
    targets = labels[:, 1:]
    where = targets != IGNORE_INDEX
    selected = hidden[:, :-1][where]  # the state at t predicts token t+1
    logits = lm.get_output_embeddings()(selected)
    softcap = getattr(lm.config, "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss = F.cross_entropy(logits.float(), targets[where], reduction="sum")
    return loss, int(where.sum())


def make_accelerator() -> Any:
    from accelerate import Accelerator

    cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return Accelerator(mixed_precision="bf16" if cuda_bf16 else "no")


@dataclass(frozen=True)
class StepStats:
    loss: float  # mean cross-entropy over the step's labelled tokens
    loss_tokens: int
    input_tokens: int  # non-padding tokens seen


def train(
    model: Any,
    samples: Sequence[Sample],
    plan: Sequence[Sequence[Sequence[int]]],
    phase: PhaseConfig,
    *,
    pad_id: int,
    accelerator: Any | None = None,
    on_step: Callable[[int, StepStats], None] | None = None,
) -> list[StepStats]:
    """Run the planned optimizer steps on the trainable (adapter) weights of ``model``."""
    from transformers import get_constant_schedule_with_warmup

    accelerator = accelerator or make_accelerator()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=phase.learning_rate, betas=(0.9, 0.95), weight_decay=0.0
    )
    # Constant after warm-up: LAB found decay in intermediate phases hurt the later ones.
    scheduler = get_constant_schedule_with_warmup(optimizer, phase.warmup_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    history = []
    for step, micro_batches in enumerate(plan, start=1):
        batches = [collate([samples[i] for i in idx], pad_id) for idx in micro_batches]
        # Normalise by the whole step's token count so grad_accum gives the same gradient
        # as one big batch.
        step_tokens = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
        total = 0.0
        for batch in batches:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                loss_sum, _ = loss_at_labels(model, **batch)
            accelerator.backward(loss_sum / step_tokens)
            total += float(loss_sum.detach())
        accelerator.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stats = StepStats(
            loss=total / step_tokens,
            loss_tokens=step_tokens,
            input_tokens=sum(int(b["attention_mask"].sum()) for b in batches),
        )
        history.append(stats)
        if on_step:
            on_step(step, stats)
    model.eval()
    return history


# --------------------------------------------------------------------------- one phase


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


def _phase_name(phase_dir: Path) -> str:
    done = Path(phase_dir) / PHASE_DONE
    return read_json(done)["phase"]["name"] if done.is_file() else Path(phase_dir).name


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
) -> dict[str, Any]:
    """Train one phase from the base plus its parents' adapters; write ``out_dir``.

    ``out_dir`` receives the adapter, ``metrics.json`` and, last, ``labmake_phase.json``
    (provenance). Returns the metrics.
    """
    import peft
    from transformers import __version__ as transformers_version

    base_dir, dataset, out_dir = Path(base_dir), Path(dataset), Path(out_dir)
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
    pool = [r for path in replay for r in read_dataset(Path(path))]
    wanted = round(phase.replay_ratio * len(records))
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
        "phase %s: loaded %s + %d parent adapter(s) in %.1f s",
        phase.name,
        base_dir,
        len(parent_dirs),
        time.monotonic() - started,
    )
    samples = prepare_samples(tokenizer, records + replayed, max_seq_len, stats)
    log.info(
        "phase %s: %d records + %d replayed -> %d samples; dropped %d longer than max_seq_len=%d, "
        "%d without an assistant turn",
        phase.name,
        stats.records,
        stats.replayed,
        stats.used,
        stats.dropped_too_long,
        max_seq_len,
        stats.dropped_no_assistant,
    )
    if not samples:
        raise TrainError(
            f"{dataset}: none of its {stats.records + stats.replayed} samples fits: "
            f"{stats.dropped_too_long} are longer than train.max_seq_len={max_seq_len} tokens, "
            f"{stats.dropped_no_assistant} have no assistant turn. Raise train.max_seq_len in "
            "params.yaml or shorten the samples (filter.max_answer_words)"
        )

    torch.manual_seed(phase_seed)  # the adapter's initial weights and dropout
    model = add_lora(model, phase.lora)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    plan = plan_steps(len(samples), phase, rng)
    accelerator = make_accelerator()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "phase %s: %d steps x %d samples, %d trainable parameters, device %s",
        phase.name,
        len(plan),
        phase.batch_size * phase.grad_accum,
        trainable,
        accelerator.device,
    )

    started = time.monotonic()
    last = [started]
    with track(f"train {phase.name}", len(plan), loss="-", tok_s="-") as advance:

        def on_step(step: int, s: StepStats) -> None:
            now = time.monotonic()
            tps = s.input_tokens / max(now - last[0], 1e-9)
            last[0] = now
            advance(loss=f"{s.loss:.4f}", tok_s=f"{tps:.0f}")

        history = train(
            model, samples, plan, phase, pad_id=pad_id, accelerator=accelerator, on_step=on_step
        )
    elapsed = time.monotonic() - started
    log.info("phase %s: trained in %.1f s (%.2f s/step)", phase.name, elapsed, elapsed / len(plan))

    losses = [round(h.loss, 6) for h in history]
    k = min(LAST_K, len(losses))
    metrics = {
        "phase": phase.name,
        "steps": len(history),
        "loss": losses,
        "loss_tokens": [h.loss_tokens for h in history],
        "input_tokens": [h.input_tokens for h in history],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "mean_last_k_loss": round(sum(losses[-k:]) / k, 6),
        "last_k": k,
        "samples": dataclasses.asdict(stats),
        "trainable_parameters": trainable,
    }
    base_info = base_dir / BASE_INFO
    provenance = {
        "phase": dataclasses.asdict(phase),
        "parents": [_phase_name(p) for p in parent_dirs],
        "parent_adapters": {
            _phase_name(p): sha256_file(Path(p) / ADAPTER_WEIGHTS) for p in parent_dirs
        },
        "base": read_json(base_info) if base_info.is_file() else None,
        "base_dir": str(base_dir),
        "dataset": {"path": str(dataset), "sha256": sha256_file(dataset)},
        "replay": [{"path": str(p), "sha256": sha256_file(Path(p))} for p in replay],
        "seed": seed,
        "max_seq_len": max_seq_len,
        "versions": {
            "labmake": __version__,
            "torch": torch.__version__,
            "transformers": transformers_version,
            "peft": peft.__version__,
        },
    }

    with atomic_dir(out_dir) as tmp:
        _save_adapter(accelerator.unwrap_model(model), tmp)
        write_json(tmp / METRICS, metrics)
        write_json(tmp / PHASE_DONE, provenance)  # last: marks the checkpoint complete
    log.info(
        "phase %s: wrote %s (loss %.4f -> %.4f)",
        phase.name,
        out_dir,
        losses[0],
        metrics["mean_last_k_loss"],
    )
    return metrics
