"""Merge: each phase's adapter (or full-tune weights) applied to the base, in order, saved as
one Hugging Face folder with the base's tokenizer files; and what the phases were, as the
``labmake.train.*`` provenance keys the GGUF carries."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.paths import BASE_MARKER, MODEL_MARKER, TOKENIZER_GGUF
from labmake.export.families import ExportError

log = logging.getLogger(__name__)


def merge(
    base_dir: Path, phase_dirs: Sequence[Path], out_dir: Path, provenance: Mapping[str, Any]
) -> None:
    """Merge each phase's LoRA adapter into the base, in order, and save the result.

    ``out_dir`` gets the merged safetensors, the base's tokenizer files and tokenizer.gguf, the
    base's labmake_base.json, and ``labmake_model.json`` (``provenance``) last.
    """
    import torch

    from labmake.training.weights import load_tuned, phase_weights

    base_dir, out_dir = Path(base_dir), Path(out_dir)
    t0 = time.monotonic()
    log.info("merging %d adapter(s) into %s", len(phase_dirs), base_dir)
    model, tokenizer = load_tuned(base_dir, [Path(p) for p in phase_dirs], dtype=torch.float32)
    with artifacts.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name in (TOKENIZER_GGUF, BASE_MARKER):
            shutil.copyfile(base_dir / name, tmp / name)
        # A LoRA phase's adapter or a full-tune phase's whole model.
        phases = {p.name: artifacts.sha256_file(phase_weights(p)) for p in map(Path, phase_dirs)}
        artifacts.write_json(
            tmp / MODEL_MARKER,
            {
                "phase_adapters_sha256": phases,
                "phases": [phase_summary(Path(p)) for p in phase_dirs],
                **provenance,
            },
        )
    log.info("merged model saved in %.0f s", time.monotonic() - t0)


def phase_summary(phase_dir: Path) -> dict[str, Any]:
    """What a trained phase was: method, steps, the kept step, data sizes and hashes.

    Read from the phase's ``labmake_phase.json`` and ``metrics.json``; a folder without them
    (an adapter trained outside labmake) gives its name only.
    """
    summary: dict[str, Any] = {"name": phase_dir.name}
    done, metrics_path = phase_dir / "labmake_phase.json", phase_dir / "metrics.json"
    if not (done.is_file() and metrics_path.is_file()):
        return summary
    info, metrics = artifacts.read_json(done), artifacts.read_json(metrics_path)
    selected = info.get("selected_checkpoint") or {}
    samples = metrics.get("samples") or {}
    summary.update(
        name=info["phase"]["name"],
        method=info["phase"].get("method", "lora"),
        steps=metrics["steps"],
        chosen_step=selected.get("step", metrics["steps"]),
        heldout_loss=selected.get("heldout_loss"),
        train_samples=samples.get("used"),
        heldout_samples=samples.get("heldout", 0),
        replayed_samples=samples.get("replayed", 0),
        dataset_sha256=info["dataset"]["sha256"],
    )
    return summary


def training_provenance(merged_dir: Path) -> dict[str, str | int | float]:
    """``labmake.train.*`` GGUF keys from a merged folder: the phases, in order, and per phase
    its method, steps, kept step, held-out loss and sample counts."""
    marker = Path(merged_dir) / MODEL_MARKER
    if not marker.is_file():
        raise ExportError(f"{merged_dir}: no {MODEL_MARKER}; run the merge stage first")
    phases = artifacts.read_json(marker).get("phases") or []
    out: dict[str, str | int | float] = {
        "labmake.train.phases": ",".join(p["name"] for p in phases)
    }
    for p in phases:
        for key, value in sorted(p.items()):
            if key != "name" and value is not None:
                out[f"labmake.train.{p['name']}.{key}"] = value
    return out
