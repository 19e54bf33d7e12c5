"""Training: one phase at a time, each starting from the base plus the earlier phases.

A phase reads a chat dataset (JSON lines with ``messages``), renders every conversation with
the student's own chat template and takes the loss on the assistant's tokens (``loss_on:
assistant``) or on every token (``all``) (:mod:`labmake.training.data`). A phase trains a fresh
LoRA adapter (``method: lora``) or every weight (``full``) on the base with the earlier phases
applied (:mod:`labmake.training.weights`). Samples over ``max_seq_len`` are dropped or
truncated (``over_length``) and counted in the metrics.

Every ``checkpoint_every`` steps the state is saved for resuming (:mod:`labmake.training.resume`)
and the loss on a held-out share of the phase's records is taken; the phase keeps the weights
of the best step, not simply the last (:mod:`labmake.training.loop`). Everything random is
seeded from the build seed and the phase name: two runs with the same inputs, interrupted or
not, write byte-identical weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from labmake import __version__
from labmake.core.artifacts import read_json
from labmake.core.config import PhaseConfig
from labmake.core.hashing import derive_seed
from labmake.core.progress import track
from labmake.core.tracking import open_run
from labmake.training.data import plan_steps
from labmake.training.inputs import PhaseRun, PhaseSamples, encode_samples, read_records
from labmake.training.loop import (
    SELECT_KEYS,
    Scored,
    StepStats,
    TrainResult,
    make_accelerator,
    train,
    weights_dtype,
)
from labmake.training.outputs import (
    InputHashes,
    chosen_scores,
    hash_inputs,
    phase_metrics,
    phase_provenance,
    write_phase,
)
from labmake.training.resume import ResumeStore, fingerprint
from labmake.training.weights import load_tuned, prepare_model

log = logging.getLogger(__name__)

# Set only by tests: SIGKILL the training process right after this optimizer step, to prove
# that a killed phase resumes from its last checkpoint (a real kill -9: no cleanup runs).
KILL_AT_STEP_ENV = "LABMAKE_TEST_KILL_AT_STEP"


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
    retention_reference: Path | None = None,
    tracking: str | None = None,
) -> dict[str, Any]:
    """Train one phase from the base plus its parents; write ``out_dir``.

    ``out_dir`` receives the adapter (or, for ``method: full``, the whole model),
    ``metrics.json`` and, last, ``labmake_phase.json`` (provenance). In-progress state goes to
    ``resume_dir`` (default: ``.resume/<out_dir's name>`` beside ``out_dir``) every
    ``checkpoint_every`` steps; a re-run after a crash resumes from it, and it is removed when
    the phase is done. With ``phase.select_by: evaluation``, ``evaluation_items`` (the
    evaluation stage's build/data/eval.jsonl) scores every checkpoint; with a
    ``retention_weight``, ``retention_reference`` (build/data/retention.jsonl) weighs the drift
    from the base in. ``tracking`` (params.yaml's) logs every step to build/tracking/train-<phase>
    (never an input of the weights). Run under a distributed
    launch (:mod:`labmake.training.launch`), every process calls this; the first one writes.
    Returns the metrics.
    """
    out_dir = Path(out_dir)
    resume_dir = Path(resume_dir) if resume_dir else out_dir.parent / ".resume" / out_dir.name
    run = PhaseRun(
        phase=phase,
        max_seq_len=max_seq_len,
        seed=seed,
        base_dir=Path(base_dir),
        parent_dirs=parent_dirs,
        dataset=Path(dataset),
        replay=replay,
        out_dir=out_dir,
        packing=packing,
        over_length=over_length,
        resume_dir=resume_dir,
        evaluation_items=evaluation_items,
        retention_reference=retention_reference,
    )
    return _run_phase(run, tracking)


def _run_phase(run: PhaseRun, tracking: str | None = None) -> dict[str, Any]:
    """The phase's steps in order: records, student, samples, plan, training, outputs."""
    phase = run.phase
    phase_seed = derive_seed(run.seed, "train", phase.name)
    rng = random.Random(phase_seed)
    records, held, stats = read_records(run, rng)
    model, tokenizer = _load_student(run)
    samples = encode_samples(run, tokenizer, records, held, stats)
    torch.manual_seed(phase_seed)  # the adapter's initial weights and dropout
    model = prepare_model(model, phase)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    plan = plan_steps(len(samples.train), phase, rng)
    accelerator = make_accelerator()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _log_setup(run, plan, trainable, accelerator)
    inputs = hash_inputs(run, samples)
    resume = ResumeStore(run.resume_dir, _fingerprint(run, inputs))
    shown = accelerator.is_main_process  # one tracker when several processes train
    with open_run(f"train-{phase.name}", tracking if shown else None) as tracker:
        result = _train_with_progress(
            run, model, samples, plan, pad_id, accelerator, resume, tracker
        )
    metrics = phase_metrics(phase, result, stats, trainable)
    provenance = phase_provenance(
        run, result, inputs, samples, n_steps=len(plan), processes=accelerator.num_processes
    )
    if accelerator.is_main_process:  # one writer when several processes train
        write_phase(run.out_dir, accelerator.unwrap_model(model), phase, metrics, provenance)
        resume.clear()
    accelerator.wait_for_everyone()
    _log_written(run, metrics, result, len(plan))
    return metrics


def _load_student(run: PhaseRun) -> tuple[Any, Any]:
    """The base with the parent phases applied, and its tokenizer."""
    started = time.monotonic()
    config_path = Path(run.base_dir) / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    dtype = weights_dtype(config.get("dtype") or config.get("torch_dtype"), run.phase.method)
    model, tokenizer = load_tuned(run.base_dir, run.parent_dirs, dtype=dtype)
    log.info(
        "phase %s: loaded %s + %d parent phase(s) in %.1f s",
        run.phase.name,
        run.base_dir,
        len(run.parent_dirs),
        time.monotonic() - started,
    )
    return model, tokenizer


def _log_setup(run: PhaseRun, plan: Sequence[Any], trainable: int, accelerator: Any) -> None:
    phase = run.phase
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


def _fingerprint(run: PhaseRun, inputs: InputHashes) -> str:
    """Everything the phase's weights depend on: a saved state with another one is stale."""
    return fingerprint(
        {
            "phase": dataclasses.asdict(run.phase),
            "seed": run.seed,
            "max_seq_len": run.max_seq_len,
            "packing": run.packing,
            "over_length": run.over_length,
            "base": inputs.base,
            "parents": inputs.parents,
            "dataset": inputs.dataset["sha256"],
            "replay": [e["sha256"] for e in inputs.replay],
            "evaluation": inputs.evaluation and inputs.evaluation["sha256"],
            "labmake": __version__,
        }
    )


def _train_with_progress(
    run: PhaseRun,
    model: Any,
    samples: PhaseSamples,
    plan: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    accelerator: Any,
    resume: ResumeStore,
    tracker: Any,
) -> TrainResult:
    """:func:`labmake.training.loop.train` with a progress display (loss, tokens per second),
    the run's tracker and the tests' kill switch after each step."""
    started = time.monotonic()
    last = [started]
    kill_hook = _kill_hook()
    # One progress display: the first process speaks for all.
    shown = accelerator.is_main_process
    bar = track(f"train {run.phase.name}", len(plan), loss="-", tok_s="-") if shown else None
    with bar or contextlib.nullcontext(lambda **_: None) as advance:

        def on_step(step: int, s: StepStats) -> None:
            now = time.monotonic()
            tps = s.input_tokens / max(now - last[0], 1e-9)
            last[0] = now
            advance(loss=f"{s.loss:.4f}", tok_s=f"{tps:.0f}")
            tracker.scalars("train", {**dataclasses.asdict(s), "tokens_per_s": tps}, step)
            kill_hook(step)

        result = train(
            model,
            samples.train,
            plan,
            run.phase,
            pad_id=pad_id,
            packing=run.packing,
            heldout=samples.heldout,
            evaluation=samples.evaluation,
            accelerator=accelerator,
            resume=resume,
            on_step=on_step,
            scored=Scored(heldout_earlier=samples.heldout_earlier, reference=samples.reference),
            on_eval=lambda e: tracker.scalars(
                "checkpoint", {k: v for k, v in e.items() if k != "step"}, e["step"]
            ),
        )
    tracker.scalar("checkpoint/chosen_step", result.chosen_step, len(plan))
    _log_trained(run, result, len(plan), time.monotonic() - started)
    return result


def _kill_hook() -> Callable[[int], None]:
    at = os.environ.get(KILL_AT_STEP_ENV)

    def hook(step: int) -> None:
        if at and step == int(at):
            log.warning("%s=%s: killing this process (SIGKILL)", KILL_AT_STEP_ENV, at)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _log_trained(run: PhaseRun, result: TrainResult, n_steps: int, elapsed: float) -> None:
    done_here = n_steps - result.resumed_from
    log.info(
        "phase %s: trained %d step(s) in %.1f s (%.2f s/step)%s",
        run.phase.name,
        done_here,
        elapsed,
        elapsed / max(done_here, 1),
        f", resumed at step {result.resumed_from}" if result.resumed_from else "",
    )


def _log_written(run: PhaseRun, metrics: dict[str, Any], result: TrainResult, n_steps: int) -> None:
    select_key = SELECT_KEYS[run.phase.select_by]
    chosen_eval = chosen_scores(result)
    log.info(
        "phase %s: wrote %s (loss %.4f -> %.4f; kept step %d of %d%s)",
        run.phase.name,
        run.out_dir,
        metrics["first_loss"],
        metrics["mean_last_k_loss"],
        result.chosen_step,
        n_steps,
        f", {select_key} {chosen_eval[select_key]:.4f}" if chosen_eval else "",
    )
