"""A later phase that keeps the earlier ones' learning: their held-out records pick its
checkpoint (select_by: heldout_all) and are never replayed; drift can weigh in."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from labmake.core.config import LoraConfig, PhaseConfig, RetentionConfig  # noqa: E402
from labmake.core.hashing import derive_seed  # noqa: E402
from labmake.evaluation import retention  # noqa: E402
from labmake.training import inputs as phase_inputs  # noqa: E402
from labmake.training.data import read_dataset, split_heldout  # noqa: E402
from labmake.training.outputs import PHASE_DONE  # noqa: E402
from labmake.training.phase import run_phase  # noqa: E402

pytestmark = pytest.mark.model

WORDS = ["red", "green", "blue", "white", "black", "yellow", "brown", "grey", "pink", "gold"]


def _data(path: Path, topic: str, n: int) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Which {topic} is number {i}?"},
                {"role": "assistant", "content": f"The {topic} {WORDS[i % len(WORDS)]}."},
            ]
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _phase(name: str, **kw) -> PhaseConfig:
    values = dict(
        name=name,
        dataset=name,
        max_steps=4,
        learning_rate=2e-2,
        batch_size=2,
        checkpoint_every=2,
        heldout_fraction=0.25,
        lora=LoraConfig(target_modules=("q_proj", "v_proj")),
    )
    return PhaseConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def first(tiny_hf_student: Path, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("forget")
    knowledge = _data(folder / "knowledge.jsonl", "colour", 8)
    out = folder / "knowledge"
    run_phase(
        _phase("knowledge"),
        max_seq_len=64,
        seed=5,
        base_dir=tiny_hf_student,
        parent_dirs=[],
        dataset=knowledge,
        replay=[],
        out_dir=out,
    )
    return knowledge, out


def test_heldout_all_scores_both_phases_data_and_never_replays_the_earlier_heldout(
    first, tiny_hf_student: Path, tmp_path: Path
) -> None:
    knowledge, out1 = first
    skills = _data(tmp_path / "skills.jsonl", "shape", 8)
    phase = _phase("skills", select_by="heldout_all", replay_ratio=1.0)
    run = phase_inputs.PhaseRun(
        phase,
        64,
        5,
        tiny_hf_student,
        [out1],
        skills,
        [knowledge],
        tmp_path / "s",
        True,
        "drop",
        tmp_path / "r",
        None,
    )
    # The first phase's held-out split, recomputed as that phase made it.
    _, theirs = split_heldout(
        read_dataset(knowledge), 0.25, random.Random(derive_seed(5, "heldout", "knowledge"))
    )
    assert phase_inputs.earlier_heldout(run) == sorted(theirs, key=phase_inputs._key)
    records, _, stats = phase_inputs.read_records(run, random.Random(0))
    held = {phase_inputs._key(r) for r in theirs}
    assert stats.replayed == 6 and not held & {phase_inputs._key(r) for r in records}
    metrics = run_phase(
        phase,
        max_seq_len=64,
        seed=5,
        base_dir=tiny_hf_student,
        parent_dirs=[out1],
        dataset=skills,
        replay=[knowledge],
        out_dir=tmp_path / "s",
    )
    for entry in metrics["heldout_loss"]:
        mean = (entry["heldout_loss"] + entry["heldout_earlier_loss"]) / 2
        assert entry["heldout_all_loss"] == pytest.approx(mean, abs=1e-6) == entry["score"]
    chosen = json.loads((tmp_path / "s" / PHASE_DONE).read_text())["selected_checkpoint"]
    assert chosen["by"] == "heldout_all_loss" and chosen["heldout_earlier_samples"] == 2
    best = min(metrics["heldout_loss"], key=lambda e: e["score"])
    assert chosen["step"] == best["step"]


def test_retention_weight_adds_the_drift_to_the_choice(
    first, tiny_hf_student: Path, tiny_student_gguf: Path, tmp_path: Path
) -> None:
    knowledge, out1 = first
    reference = tmp_path / "retention.jsonl"
    retention.build_reference(
        tiny_hf_student,
        tiny_student_gguf,
        RetentionConfig(prompts=2, tokens=4, top_k=8),
        5,
        reference,
        n_threads=1,
    )
    skills = _data(tmp_path / "skills.jsonl", "shape", 8)
    phase = _phase("skills", retention_weight=10.0)
    metrics = run_phase(
        phase,
        max_seq_len=64,
        seed=5,
        base_dir=tiny_hf_student,
        parent_dirs=[out1],
        dataset=skills,
        replay=[],
        out_dir=tmp_path / "s",
        retention_reference=reference,
    )
    for entry in metrics["heldout_loss"]:
        assert entry["retention_kl"] > 0
        assert entry["score"] == pytest.approx(
            entry["heldout_loss"] + 10.0 * entry["retention_kl"], abs=1e-5
        )
    with pytest.raises(ValueError, match="retention reference"):
        run_phase(
            phase,
            max_seq_len=64,
            seed=5,
            base_dir=tiny_hf_student,
            parent_dirs=[out1],
            dataset=skills,
            replay=[],
            out_dir=tmp_path / "t",
        )
