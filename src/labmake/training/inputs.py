"""What one phase trains on: its records, held out and replayed, encoded into samples.

A phase's own records are split into training and held-out ones (with their own generator,
so holding out changes nothing else that is drawn); records of earlier phases' datasets are
replayed (``replay_ratio``) against forgetting. Every record that cannot be trained on is
counted in :class:`labmake.training.data.DataStats`, and a phase with nothing left to train
on stops with a message that says which knob to turn.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labmake.core import paths
from labmake.core.artifacts import read_json, read_jsonl, sha256_file
from labmake.core.config import PhaseConfig
from labmake.core.hashing import derive_seed
from labmake.training.data import (
    DataStats,
    Sample,
    TrainError,
    draw_replay,
    encode,
    prepare_samples,
    read_dataset,
    split_heldout,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhaseRun:
    """One phase's config and the arguments it runs with (those of
    :func:`labmake.training.phase.run_phase`)."""

    phase: PhaseConfig
    max_seq_len: int
    seed: int
    base_dir: Path
    parent_dirs: Sequence[Path]
    dataset: Path
    replay: Sequence[Path]
    out_dir: Path
    packing: bool
    over_length: str
    resume_dir: Path
    evaluation_items: Path | None
    retention_reference: Path | None = None  # read when the phase's retention_weight > 0


@dataclass
class PhaseSamples:
    train: list[Sample]
    heldout: list[Sample]  # scored at every checkpoint, never trained on
    evaluation: list[Sample]  # the evaluation items (select_by: evaluation), else none
    evaluation_entry: dict[str, Any] | None  # their path, sha256 and count, for provenance
    stats: DataStats
    heldout_earlier: list[Sample] = field(default_factory=list)  # earlier phases' held-out
    reference: list[dict[str, Any]] = field(default_factory=list)  # retention reference


def _key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


def earlier_heldout(run: PhaseRun) -> list[dict[str, Any]]:
    """The records the earlier phases held out of the datasets this phase replays: split
    again exactly as each of them split its dataset (same records, fraction and seed)."""
    replayed = {sha256_file(Path(p)): Path(p) for p in run.replay}
    held: dict[str, dict[str, Any]] = {}
    for parent in run.parent_dirs:
        done = Path(parent) / Path(paths.CHECKPOINT_DONE).name
        if not done.is_file():
            continue
        record = read_json(done)
        source = replayed.get(record.get("dataset", {}).get("sha256"))
        phase = record.get("phase", {})
        if source is None or not phase.get("heldout_fraction"):
            continue
        rng = random.Random(derive_seed(run.seed, "heldout", phase["name"]))
        _, theirs = split_heldout(read_dataset(source), phase["heldout_fraction"], rng)
        held.update((_key(r), r) for r in theirs)
    return [held[k] for k in sorted(held)]


def read_records(
    run: PhaseRun, rng: random.Random
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], DataStats]:
    """(training records with the replayed ones after them, held-out records, counts so far).

    The replayed records are drawn from ``rng``, the phase's generator, never among the
    records an earlier phase held out (:func:`earlier_heldout`)."""
    phase = run.phase
    records = read_dataset(run.dataset)
    if not records:
        raise TrainError(
            f"{run.dataset}: empty, so phase '{phase.name}' has nothing to train on. The filter "
            "kept no samples for this phase's leaves: check build/filtered/*.stats.json, add "
            "seed examples or loosen the filter section of params.yaml"
        )
    stats = DataStats(records=len(records))
    # Its own generator, so holding out changes nothing else that is drawn.
    own, held = split_heldout(
        records,
        phase.heldout_fraction,
        random.Random(derive_seed(run.seed, "heldout", phase.name)),
    )
    kept_out = {_key(r) for r in earlier_heldout(run)}
    pool = [r for path in run.replay for r in read_dataset(Path(path)) if _key(r) not in kept_out]
    wanted = round(phase.replay_ratio * len(own))
    replayed = draw_replay(pool, wanted, rng)
    if wanted and not pool:
        log.warning(
            "phase %s: replay_ratio %.2f but no earlier data to replay",
            phase.name,
            phase.replay_ratio,
        )
    stats.replayed = len(replayed)
    return own + replayed, held, stats


def encode_samples(
    run: PhaseRun,
    tokenizer: Any,
    records: list[dict[str, Any]],
    held: list[dict[str, Any]],
    stats: DataStats,
) -> PhaseSamples:
    """The training, held-out and evaluation samples, every record left out counted in
    ``stats``; an error when no training sample is left."""
    prep = {"loss_on": run.phase.loss_on, "over_length": run.over_length}
    samples = prepare_samples(tokenizer, records, run.max_seq_len, stats, **prep)
    heldout = prepare_samples(tokenizer, held, run.max_seq_len, stats, **prep)
    stats.used, stats.heldout = len(samples), len(heldout)
    evaluation, evaluation_entry = evaluation_samples(run.phase, tokenizer, run.evaluation_items)
    earlier = prepare_samples(tokenizer, earlier_heldout(run), run.max_seq_len, None, **prep)
    log.info(
        "phase %s: %d records (%d held out) + %d replayed -> %d training samples; over "
        "max_seq_len=%d: %d dropped, %d truncated; %d without an assistant turn dropped",
        run.phase.name,
        stats.records,
        len(held),
        stats.replayed,
        stats.used,
        run.max_seq_len,
        stats.dropped_too_long,
        stats.truncated_too_long,
        stats.dropped_no_assistant,
    )
    if not samples:
        raise TrainError(
            f"{run.dataset}: none of its {stats.records + stats.replayed} samples fits: "
            f"{stats.dropped_too_long} are longer than train.max_seq_len={run.max_seq_len} "
            f"tokens, {stats.dropped_no_assistant} have no assistant turn. Raise "
            "train.max_seq_len in params.yaml, set train.over_length: truncate, or shorten the "
            "samples (filter.max_answer_words)"
        )
    reference = (
        read_jsonl(run.retention_reference)
        if run.retention_reference and run.phase.retention_weight > 0
        else []
    )
    if run.phase.retention_weight > 0 and not reference:
        raise TrainError(
            f"phase '{run.phase.name}': retention_weight needs the retention reference "
            f"({paths.RETENTION_REFERENCE}); set retention_weight: 0 or build it"
        )
    return PhaseSamples(samples, heldout, evaluation, evaluation_entry, stats, earlier, reference)


def evaluation_samples(
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
