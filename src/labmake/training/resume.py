"""Resumable state of one training phase: what a killed run needs to finish as if never stopped.

A phase's state lives in its own folder, ``build/cache/train-resume/{phase}`` for a build
(:data:`labmake.core.paths.RESUME_DIR`), beside the phase's output rather than inside it: Snakemake
deletes the outputs of a failed job, and this folder must survive a ``kill -9`` so that the
re-run picks up where the killed one stopped. It holds one ``state/`` folder, replaced
atomically at every checkpoint:

    trainable.safetensors   the weights being trained (the LoRA adapter, or all for a full tune)
    best.safetensors        the trainable weights at the best held-out loss so far (if any)
    optimizer.pt, scheduler.pt, rng.pt   AdamW moments, the LR schedule, torch's RNG states
    progress.json           step, loss history, held-out losses; written last

``progress.json`` also records a fingerprint of everything the phase's result depends on
(config, data, parents, seed); a state with another fingerprint is stale and is discarded, so
an edited dataset never continues an old run. The folder is removed once the phase's output
is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labmake.core.artifacts import atomic_dir, read_json, write_json

log = logging.getLogger(__name__)

RESUME_FORMAT = 1  # bump when the state's layout changes: older states are then discarded
STATE = "state"
WEIGHTS = "trainable.safetensors"
BEST = "best.safetensors"
OPTIMIZER = "optimizer.pt"
SCHEDULER = "scheduler.pt"
RNG = "rng.pt"
PROGRESS = "progress.json"


def fingerprint(inputs: Any) -> str:
    """A hash of a JSON-able description of everything a phase's result depends on."""
    text = json.dumps(
        {"format": RESUME_FORMAT, "inputs": inputs}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    history: list[dict[str, Any]] = field(default_factory=list)  # one StepStats dict per step
    evals: list[dict[str, Any]] = field(default_factory=list)  # {"step", "heldout_loss"}
    best_step: int | None = None  # the step of the lowest held-out loss so far


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """The weights that require gradients, by name, as CPU copies."""
    return {
        name: p.detach().to("cpu", copy=True).contiguous()
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def load_trainable(model: Any, tensors: dict[str, torch.Tensor]) -> None:
    """Copy ``tensors`` into the model's trainable weights (names must match exactly)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(tensors):
        raise ValueError("the saved trainable weights do not match the model's")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(tensors[name].to(p.device, p.dtype))


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ResumeStore:
    """The resumable state of one phase in ``root``, valid only for ``key`` (a fingerprint)."""

    def __init__(self, root: Path, key: str) -> None:
        self.root = Path(root)
        self.key = key
        self.state = self.root / STATE

    def load(
        self, model: Any, optimizer: Any, scheduler: Any
    ) -> tuple[Progress, dict[str, torch.Tensor] | None] | None:
        """Restore weights, optimizer, schedule and RNG from the saved state, if it fits.

        Returns the progress and the best weights so far, or None (nothing to resume; a stale
        or unreadable state is removed).
        """
        from safetensors.torch import load_file

        done = self.state / PROGRESS
        if not done.is_file():
            return None
        try:
            saved = read_json(done)
        except (OSError, ValueError):
            saved = {}
        if saved.get("fingerprint") != self.key:
            log.warning("%s: a resume state of other inputs or code; starting over", self.root)
            self.clear()
            return None
        load_trainable(model, load_file(self.state / WEIGHTS))
        optimizer.load_state_dict(torch.load(self.state / OPTIMIZER, weights_only=True))
        scheduler.load_state_dict(torch.load(self.state / SCHEDULER, weights_only=True))
        _set_rng_state(torch.load(self.state / RNG, weights_only=True))
        best = load_file(self.state / BEST) if (self.state / BEST).is_file() else None
        progress = Progress(
            step=saved["step"],
            history=saved["history"],
            evals=saved["evals"],
            best_step=saved["best_step"],
        )
        return progress, best

    def save(
        self,
        progress: Progress,
        model: Any,
        optimizer: Any,
        scheduler: Any,
        best: dict[str, torch.Tensor] | None,
    ) -> None:
        """Replace the saved state with the current one in one rename."""
        from safetensors.torch import save_file

        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_dir(self.state) as tmp:
            save_file(trainable_state(model), tmp / WEIGHTS)
            if progress.best_step is not None:
                previous = self.state / BEST
                if progress.best_step != progress.step and previous.is_file():
                    _link_or_copy(previous, tmp / BEST)  # unchanged since the last checkpoint
                elif best is not None:
                    save_file(best, tmp / BEST)
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
            torch.save(scheduler.state_dict(), tmp / SCHEDULER)
            torch.save(_rng_state(), tmp / RNG)
            write_json(  # last: a state folder without it is incomplete
                tmp / PROGRESS,
                {
                    "fingerprint": self.key,
                    "step": progress.step,
                    "history": progress.history,
                    "evals": progress.evals,
                    "best_step": progress.best_step,
                },
            )

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        parent = self.root.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()  # the shared resume folder, once no phase is in progress


def _link_or_copy(src: Path, dst: Path) -> None:
    # Saved files are never modified in place, so a hard link is a safe, free copy.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
