"""The optimizer loop of one phase: planned steps, checkpoint scores, the best step kept.

Frozen weights get no gradient; bf16 autocast on a GPU that has it, fp32 elsewhere
(:func:`mixed_precision`). Every ``checkpoint_every`` steps the state is saved for resuming
(:mod:`labmake.training.resume`) and the loss on a held-out share of the phase's records is
taken; the loop hands back the weights of the best step, not simply the last. With several
processes (a distributed launch) each step's samples are shared out between them and the
gradients summed, so the result is the one-process training, N times as fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from labmake.core.config import PhaseConfig
from labmake.training.data import Sample, make_batch, to_device
from labmake.training.drift import drift, mean_kl
from labmake.training.loss import evaluation_nll, heldout_loss, label_count, loss_at_labels
from labmake.training.resume import Progress, ResumeStore, load_trainable, trainable_state

log = logging.getLogger(__name__)

MAX_GRAD_NORM = 1.0
# The score each ``select_by`` setting picks the checkpoint on, as it is named in the metrics.
SELECT_KEYS = {
    "heldout_loss": "heldout_loss",
    "heldout_all": "heldout_all_loss",
    "evaluation": "evaluation_nll",
}


def mixed_precision(device: torch.device) -> str:
    """bf16 autocast where the device computes it natively (CUDA with bf16), else full fp32.

    The CPU stays in fp32: its bf16 matmuls are slower than fp32 on most x86 cores and the
    tiny test models' checks are written against fp32 numerics.
    """
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def weights_dtype(model_dtype: str | None, method: str) -> torch.dtype:
    """The dtype a phase loads the model in: fp32 on a CPU (always); on a GPU with bf16, a LoRA
    phase keeps a bf16 model's frozen weights in bf16 (its own dtype: half the memory, the
    numbers it was released with); a full tune keeps fp32 master weights under bf16 autocast.
    ``model_dtype``: config.json's dtype (a GGUF student's base folder is float32)."""
    if method == "lora" and model_dtype == "bfloat16" and mixed_precision(_device()) == "bf16":
        return torch.bfloat16
    return torch.float32


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


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
    learning_rate: float = 0.0  # the rate this step's update used


@dataclass
class TrainResult:
    history: list[StepStats]
    # per checkpoint: {"step", "heldout_loss"[, "heldout_earlier_loss", "heldout_all_loss",
    # "retention_kl", "evaluation_nll", "score"]}
    evals: list[dict[str, Any]]
    chosen_step: int  # the step whose weights the model holds on return
    resumed_from: int  # the step a saved state was resumed at; 0 for a fresh start


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


@dataclass
class _Loop:
    """What the loop carries from step to step."""

    accelerator: Any
    model: Any  # as accelerator.prepare() wrapped it
    params: list[torch.nn.Parameter]  # the trainable weights
    # The raw optimizer and scheduler stay referenced for saving; prepare() wraps them.
    optimizer: Any
    scheduler: Any
    opt: Any
    sched: Any
    progress: Progress
    best: dict[str, torch.Tensor] | None  # the trainable weights of the best checkpoint so far
    resumed_from: int
    select_key: str  # the score that picks the checkpoint (SELECT_KEYS)


@dataclass(frozen=True)
class Scored:
    """What a checkpoint is scored on, besides its own held-out records."""

    heldout_earlier: Sequence[Sample] = ()  # the earlier phases' held-out records
    evaluation: Sequence[Sample] = ()  # the evaluation items (select_by: evaluation)
    reference: Sequence[dict[str, Any]] = ()  # the retention reference (retention_weight > 0)


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
    scored: Scored | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Run the planned optimizer steps on the trainable weights of ``model``.

    At every checkpoint step (``phase.checkpoint_every``, and the last step) the loss on
    ``heldout`` (and, with ``phase.select_by: evaluation``, the evaluation score on
    ``evaluation``) is taken and, with ``resume``, the whole state saved. On return the model
    holds the weights of the best checkpoint by ``phase.select_by`` (the last step when there is
    nothing to score). ``scored`` adds the earlier phases' held-out records (``select_by:
    heldout_all``) and the retention reference (``retention_weight``); ``on_eval`` sees each
    checkpoint's scores. A state found in ``resume`` is restored first and training continues
    from it; the result is the same, bit for bit, as a run never stopped.

    With several processes (a distributed launch) each step's samples are shared out by
    :func:`process_share`; every process scales its loss so that the averaged gradient equals
    the one-process gradient of the whole step: the same training, N times the throughput.
    """
    loop = _start(model, phase, accelerator or make_accelerator(), resume, len(plan))
    checkpoints = checkpoint_steps(len(plan), phase.checkpoint_every)
    scored = dataclasses.replace(scored or Scored(), evaluation=evaluation)
    for step in range(loop.progress.step + 1, len(plan) + 1):
        stats = _optimizer_step(loop, samples, plan[step - 1], pad_id=pad_id, packing=packing)
        loop.progress.step = step
        loop.progress.history.append(dataclasses.asdict(stats))
        if step in checkpoints:
            entry = _checkpoint(loop, step, phase, heldout=heldout, scored=scored, resume=resume)
            if on_eval and entry:
                on_eval(entry)
        if on_step:
            on_step(step, stats)
    return _finish(loop, len(plan))


def _start(
    model: Any, phase: PhaseConfig, accelerator: Any, resume: ResumeStore | None, n_steps: int
) -> _Loop:
    """An optimizer for the trainable weights, restored from ``resume`` when it holds a state,
    and everything prepared for ``accelerator``."""
    from transformers import get_constant_schedule_with_warmup

    select_key = SELECT_KEYS[phase.select_by]
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
        log.info("phase %s: resuming at step %d of %d", phase.name, progress.step, n_steps)
    wrapped, opt, sched = accelerator.prepare(model, optimizer, scheduler)
    wrapped.train()
    return _Loop(
        accelerator,
        wrapped,
        params,
        optimizer,
        scheduler,
        opt,
        sched,
        progress,
        best,
        resumed_from=progress.step,
        select_key=select_key,
    )


def _optimizer_step(
    loop: _Loop,
    samples: Sequence[Sample],
    step_plan: Sequence[Sequence[int]],
    *,
    pad_id: int,
    packing: bool,
) -> StepStats:
    """One optimizer step: this process's share of every micro-batch, then one clipped update."""
    accelerator = loop.accelerator
    rank, world = accelerator.process_index, accelerator.num_processes
    # Normalise by the whole step's token count (all processes) so grad_accum and the
    # number of processes give the same gradient as one big batch.
    step_tokens = sum(label_count(samples[i]) for idx in step_plan for i in idx)
    learning_rate = float(loop.sched.get_last_lr()[0])
    local = torch.zeros(2, dtype=torch.float64)  # this process's loss sum, input tokens
    share = process_share(step_plan, rank, world)
    for k, idx in enumerate(share):
        # An empty share still runs (on a sample, weighted 0): DDP's gradient all-reduce
        # needs every process in every backward.
        batch = make_batch([samples[i] for i in (idx or step_plan[k][:1])], pad_id, packing)
        last = k == len(share) - 1
        loss_sum = _backward(loop, batch, sync=last, counted=bool(idx), step_tokens=step_tokens)
        if idx:
            local[0] += float(loss_sum.detach())
            mask = batch["attention_mask"]
            local[1] += int(batch["input_ids"].numel() if mask is None else mask.sum())
    accelerator.clip_grad_norm_(loop.params, MAX_GRAD_NORM)
    loop.opt.step()
    loop.sched.step()
    loop.opt.zero_grad(set_to_none=True)
    if world > 1:
        local = accelerator.reduce(local.to(accelerator.device), "sum").cpu()
    return StepStats(
        loss=float(local[0]) / step_tokens,
        loss_tokens=step_tokens,
        input_tokens=int(local[1]),
        learning_rate=learning_rate,
    )


def _backward(
    loop: _Loop, batch: dict[str, Any], *, sync: bool, counted: bool, step_tokens: int
) -> torch.Tensor:
    """Forward and backward of one micro-batch; its summed loss. An uncounted micro-batch (an
    empty share) is weighted 0. Gradients are all-reduced only with ``sync``: once per step,
    after the last micro-batch."""
    accelerator, model = loop.accelerator, loop.model
    world = accelerator.num_processes
    with contextlib.nullcontext() if sync else accelerator.no_sync(model):
        with accelerator.autocast():
            loss_sum, _ = loss_at_labels(model, **to_device(batch, accelerator.device))
        # DDP averages gradients over processes: scale by their number to get the sum.
        accelerator.backward(loss_sum * world / step_tokens if counted else loss_sum * 0.0)
    return loss_sum


def _checkpoint(
    loop: _Loop,
    step: int,
    phase: PhaseConfig,
    *,
    heldout: Sequence[Sample],
    scored: Scored,
    resume: ResumeStore | None,
) -> dict[str, Any] | None:
    """At a checkpoint step: score the weights, remember them if they are the best so far, and
    save the whole state for resuming. Returns the scores (None when nothing is scored)."""
    accelerator, progress = loop.accelerator, loop.progress
    selects = {
        "evaluation": scored.evaluation,
        "heldout_all": [*heldout, *scored.heldout_earlier],
    }.get(phase.select_by, heldout)
    entry = None
    if selects:
        entry = _scores(loop, step, phase, heldout=heldout, scored=scored)
        progress.evals.append(entry)
        best = progress.best_step
        if best is None or entry["score"] < _eval_at(progress, best, loop.select_key):
            progress.best_step = step
            loop.best = trainable_state(accelerator.unwrap_model(loop.model))
        log.info(
            "phase %s: step %d %s",
            phase.name,
            step,
            ", ".join(f"{k} {v:.4f}" for k, v in entry.items() if k != "step"),
        )
    if resume and phase.checkpoint_every:
        if accelerator.is_main_process:  # one writer when several processes train
            model = accelerator.unwrap_model(loop.model)
            resume.save(progress, model, loop.optimizer, loop.scheduler, loop.best)
        accelerator.wait_for_everyone()
    return entry


def _scores(
    loop: _Loop,
    step: int,
    phase: PhaseConfig,
    *,
    heldout: Sequence[Sample],
    scored: Scored,
) -> dict[str, Any]:
    """The checkpoint's scores, rounded as stored, so a resumed run compares the same numbers;
    ``score`` is the one that picks the checkpoint (lower is better)."""
    entry: dict[str, Any] = {"step": step}
    acc = loop.accelerator
    if heldout:
        entry["heldout_loss"] = round(heldout_loss(loop.model, heldout, accelerator=acc), 6)
    if scored.heldout_earlier:
        entry["heldout_earlier_loss"] = round(
            heldout_loss(loop.model, scored.heldout_earlier, accelerator=acc), 6
        )
    if phase.select_by == "heldout_all":
        # The phase's own data and the earlier phases' data weigh the same, however many
        # records each has: forgetting one cannot hide behind learning the other.
        parts = [entry[k] for k in ("heldout_loss", "heldout_earlier_loss") if k in entry]
        entry["heldout_all_loss"] = round(sum(parts) / len(parts), 6)
    if phase.select_by == "evaluation":
        entry["evaluation_nll"] = round(
            evaluation_nll(loop.model, scored.evaluation, accelerator=acc), 6
        )
    score = entry[loop.select_key]
    if scored.reference and phase.retention_weight > 0:
        entry["retention_kl"] = round(
            mean_kl(drift(loop.model, scored.reference, accelerator=acc)), 6
        )
        score += phase.retention_weight * entry["retention_kl"]
    entry["score"] = round(score, 6)
    return entry


def _eval_at(progress: Progress, step: int, select_key: str) -> float:
    """A checkpoint's ``score`` (a state saved before scores had one: its ``select_key``)."""
    entry = next(e for e in progress.evals if e["step"] == step)
    return entry.get("score", entry[select_key])


def _finish(loop: _Loop, n_steps: int) -> TrainResult:
    """Leave the model in eval mode holding the best checkpoint's weights; the loop's record."""
    loop.model.eval()
    progress = loop.progress
    chosen = progress.best_step if progress.best_step is not None else n_steps
    if chosen != n_steps and loop.best is not None:
        load_trainable(loop.accelerator.unwrap_model(loop.model), loop.best)
    return TrainResult(
        history=[StepStats(**h) for h in progress.history],
        evals=progress.evals,
        chosen_step=chosen,
        resumed_from=loop.resumed_from,
    )
