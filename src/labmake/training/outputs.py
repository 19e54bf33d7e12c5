"""What a finished phase leaves in its folder: the weights, ``metrics.json`` and, written last,
``labmake_phase.json``, the provenance that marks the folder complete.

The provenance names every input by its hash and holds no wall-clock value, so two runs with
the same inputs, interrupted or not, write byte-identical folders.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from labmake import __version__
from labmake.core.artifacts import atomic_dir, read_json, sha256_file, write_json
from labmake.core.config import PhaseConfig
from labmake.core.paths import BASE_MARKER
from labmake.training.data import DataStats
from labmake.training.inputs import PhaseRun, PhaseSamples
from labmake.training.loop import SELECT_KEYS, TrainResult
from labmake.training.weights import phase_weights, save_phase_weights

METRICS = "metrics.json"
PHASE_DONE = "labmake_phase.json"  # written last: its presence marks a complete checkpoint
LAST_K = 5  # metrics report the mean loss of the last k steps (less noisy than the last one)


def phase_name(phase_dir: Path) -> str:
    """The name a finished phase was trained under (its folder's name if it has no record)."""
    done = Path(phase_dir) / PHASE_DONE
    return read_json(done)["phase"]["name"] if done.is_file() else Path(phase_dir).name


@dataclass(frozen=True)
class InputHashes:
    """Every input of a phase by content, as its provenance records them; the resume state's
    fingerprint holds them too, so that an edited input never continues an old run."""

    base: dict[str, Any] | None  # the base folder's own record (labmake_base.json), if any
    parents: dict[str, str]  # parent phase name -> sha256 of its weights
    dataset: dict[str, str]  # {"path", "sha256"}
    replay: list[dict[str, str]]  # {"path", "sha256"} per replayed dataset
    evaluation: dict[str, Any] | None  # the evaluation items (select_by: evaluation)


def hash_inputs(run: PhaseRun, samples: PhaseSamples) -> InputHashes:
    """The base's record, the parents' weights and every dataset of ``run``, by content."""
    parents = {phase_name(p): sha256_file(phase_weights(p)) for p in run.parent_dirs}
    dataset = {"path": str(run.dataset), "sha256": sha256_file(run.dataset)}
    replay = [{"path": str(p), "sha256": sha256_file(Path(p))} for p in run.replay]
    base_info = run.base_dir / BASE_MARKER
    base = read_json(base_info) if base_info.is_file() else None
    return InputHashes(base, parents, dataset, replay, samples.evaluation_entry)


def chosen_scores(result: TrainResult) -> dict[str, Any] | None:
    """The scores of the checkpoint the phase kept; None when none was scored."""
    return next((e for e in result.evals if e["step"] == result.chosen_step), None)


def phase_metrics(
    phase: PhaseConfig, result: TrainResult, stats: DataStats, trainable: int
) -> dict[str, Any]:
    """``metrics.json``: the loss of every step, the checkpoint scores, the data counts."""
    history = result.history
    losses = [round(h.loss, 6) for h in history]
    k = min(LAST_K, len(losses))
    return {
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


def phase_provenance(
    run: PhaseRun,
    result: TrainResult,
    inputs: InputHashes,
    samples: PhaseSamples,
    *,
    n_steps: int,
    processes: int,
) -> dict[str, Any]:
    """``labmake_phase.json``: the config, every input by hash, the kept checkpoint and the
    library versions that trained it."""
    import peft
    from transformers import __version__ as transformers_version

    return {
        "phase": dataclasses.asdict(run.phase),
        "parents": [phase_name(p) for p in run.parent_dirs],
        "parent_adapters": inputs.parents,
        "base": inputs.base,
        "base_dir": str(run.base_dir),
        "dataset": inputs.dataset,
        "replay": inputs.replay,
        "evaluation_items": inputs.evaluation,
        "processes": processes,
        "seed": run.seed,
        "max_seq_len": run.max_seq_len,
        "packing": run.packing,
        "over_length": run.over_length,
        "selected_checkpoint": _selected_checkpoint(run.phase, result, samples, n_steps),
        "versions": {
            "labmake": __version__,
            "torch": torch.__version__,
            "transformers": transformers_version,
            "peft": peft.__version__,
        },
    }


def _selected_checkpoint(
    phase: PhaseConfig, result: TrainResult, samples: PhaseSamples, n_steps: int
) -> dict[str, Any]:
    chosen_eval = chosen_scores(result)
    select_key = SELECT_KEYS[phase.select_by]
    return {
        "step": result.chosen_step,
        "of_steps": n_steps,
        "by": select_key if chosen_eval else "last_step",
        "heldout_loss": chosen_eval.get("heldout_loss") if chosen_eval else None,
        "heldout_samples": samples.stats.heldout,
        **{
            key: chosen_eval[key]
            for key in ("heldout_earlier_loss", "heldout_all_loss", "retention_kl", "score")
            if chosen_eval and key in chosen_eval
        },
        **(
            {"heldout_earlier_samples": len(samples.heldout_earlier)}
            if samples.heldout_earlier
            else {}
        ),
        **(
            {
                "evaluation_nll": chosen_eval["evaluation_nll"] if chosen_eval else None,
                "evaluation_items": len(samples.evaluation),
            }
            if phase.select_by == "evaluation"
            else {}
        ),
    }


def write_phase(
    out_dir: Path,
    model: Any,
    phase: PhaseConfig,
    metrics: dict[str, Any],
    provenance: dict[str, Any],
) -> None:
    """Replace ``out_dir`` at once with the phase's weights, metrics and provenance."""
    with atomic_dir(out_dir) as tmp:
        save_phase_weights(model, phase, tmp)
        write_json(tmp / METRICS, metrics)
        write_json(tmp / PHASE_DONE, provenance)  # last: marks the checkpoint complete
