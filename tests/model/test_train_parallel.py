"""Data-parallel training (several processes) and checkpoint selection by the evaluation score.

The multi-process tests run real DDP on this machine's CPU (gloo): the same code path a GPU
node takes with NCCL, minus the device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from labmake.core.config import LoraConfig, PhaseConfig  # noqa: E402
from labmake.training import launch, loop  # noqa: E402
from labmake.training.data import TrainError, encode  # noqa: E402
from labmake.training.loop import process_share  # noqa: E402
from labmake.training.loss import evaluation_nll  # noqa: E402
from labmake.training.outputs import METRICS, PHASE_DONE  # noqa: E402
from labmake.training.phase import KILL_AT_STEP_ENV, run_phase  # noqa: E402
from labmake.training.weights import ADAPTER_WEIGHTS  # noqa: E402

pytestmark = pytest.mark.model

ANIMALS = ["otter", "heron", "badger", "lynx", "marten", "wren", "stoat", "vole", "hare"]
FOODS = ["fish", "frogs", "worms", "hares", "eggs", "spiders", "mice", "roots", "grass"]


def _records(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What does the {ANIMALS[i % 9]} eat?"},
                {"role": "assistant", "content": f"The {ANIMALS[i % 9]} eats {FOODS[i % 9]}."},
            ]
        }
        for i in range(n)
    ]


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("data") / "knowledge.jsonl", _records(12))


def _phase(**overrides) -> PhaseConfig:
    values = {
        "name": "knowledge",
        "dataset": "knowledge",
        "max_steps": 6,
        "learning_rate": 2e-2,
        "warmup_steps": 1,
        # 3 samples per micro-batch over 2 processes: shares of 2 and 1, never equal.
        "batch_size": 3,
        "grad_accum": 2,
        "checkpoint_every": 3,
        "heldout_fraction": 0.2,
        "lora": LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
    }
    values.update(overrides)
    return PhaseConfig(**values)


def _kwargs(base: Path, data: Path, out: Path, **extra) -> dict:
    return {
        "max_seq_len": 64,
        "seed": 11,
        "base_dir": base,
        "parent_dirs": [],
        "dataset": data,
        "replay": [],
        "out_dir": out,
        **extra,
    }


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / ADAPTER_WEIGHTS)


def test_each_process_gets_its_share_of_every_micro_batch() -> None:
    step = [[0, 1, 2, 3, 4], [5, 6], [7]]
    shares = [process_share(step, rank, 3) for rank in range(3)]
    assert all(len(s) == len(step) for s in shares)  # same number of backward passes
    for k, micro in enumerate(step):
        dealt = [i for s in shares for i in s[k]]
        assert sorted(dealt) == micro  # every sample once, none twice
    assert shares[2][1] == [] and shares[1][2] == []  # more processes than samples: empty
    assert process_share(step, 0, 1) == step


def test_process_count_setting(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert launch.resolve_processes("auto") == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert launch.resolve_processes("auto") == 4  # one per GPU the job sees
    assert launch.resolve_processes(2) == 2
    with pytest.raises(ValueError, match="train.processes"):
        launch.resolve_processes(0)


def test_two_processes_train_like_one(tiny_hf_student: Path, data: Path, tmp_path: Path) -> None:
    phase = _phase()
    one = run_phase(phase, **_kwargs(tiny_hf_student, data, tmp_path / "one"))
    log_file = tmp_path / "train.log"
    log_file.write_text("launcher line\n")
    launch.launch(
        2,
        phase,
        _kwargs(tiny_hf_student, data, tmp_path / "two"),
        log_file=str(log_file),
        threads=2,
    )
    two = json.loads((tmp_path / "two" / METRICS).read_text())
    # The same steps over the same samples: token counts exactly, losses to float noise.
    assert two["loss_tokens"] == one["loss_tokens"]
    assert two["input_tokens"] == one["input_tokens"]
    assert two["loss"] == pytest.approx(one["loss"], abs=2e-4)
    assert two["chosen_step"] == one["chosen_step"]
    for got, want in zip(two["heldout_loss"], one["heldout_loss"], strict=True):
        assert got["step"] == want["step"]
        assert got["heldout_loss"] == pytest.approx(want["heldout_loss"], abs=2e-4)
    a, b = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    assert set(a) == set(b)
    for name in a:
        # Tight on purpose: AdamW and clipping nearly undo a wrongly scaled gradient (half the
        # sum moves weights ~5e-4 away here), while a correct all-reduce stays within ~1e-5.
        torch.testing.assert_close(b[name], a[name], atol=5e-5, rtol=0)
    trained = _adapter(tmp_path / "one")
    assert any(float(t.abs().max()) > 0 for n, t in trained.items() if "lora_B" in n)
    provenance = json.loads((tmp_path / "two" / PHASE_DONE).read_text())
    assert provenance["processes"] == 2
    text = log_file.read_text()
    # The launcher's log keeps its lines; the first worker appends to it, once per step.
    assert text.startswith("launcher line\n")
    assert "2 process(es)" in text and text.count("wrote ") == 1


@pytest.mark.slow  # three two-process launches
def test_a_killed_worker_stops_the_launch_and_the_rerun_resumes(
    tiny_hf_student: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    phase = _phase(max_steps=6, checkpoint_every=2)
    whole = tmp_path / "whole"
    launch.launch(2, phase, _kwargs(tiny_hf_student, data, whole), threads=2)

    out = tmp_path / "killed"
    monkeypatch.setenv(KILL_AT_STEP_ENV, "3")
    with pytest.raises(launch.LaunchError, match="killed by signal 9.*resume"):
        launch.launch(2, phase, _kwargs(tiny_hf_student, data, out), threads=2)
    assert not out.exists()
    progress = json.loads((tmp_path / ".resume" / "killed" / "state" / "progress.json").read_text())
    assert progress["step"] == 2  # the last checkpoint before the kill
    monkeypatch.delenv(KILL_AT_STEP_ENV)
    launch.launch(2, phase, _kwargs(tiny_hf_student, data, out), threads=2)
    for name in (ADAPTER_WEIGHTS, METRICS):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_a_worker_error_is_one_clear_message(tiny_hf_student: Path, tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(launch.LaunchError, match=r"process \d of 2 exited with status 1"):
        launch.launch(2, _phase(), _kwargs(tiny_hf_student, empty, tmp_path / "o"), threads=2)


def test_checkpoint_selected_by_the_evaluation_score(
    tiny_hf_student: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    items = _write(tmp_path / "eval.jsonl", _records(3))
    real = loop.evaluation_nll
    seen: list[int] = []

    def scripted(model, samples, **kw):  # an evaluation curve with its minimum at step 3
        seen.append(len(samples))
        real(model, samples, **kw)  # the real scorer runs too
        return [2.0, 1.0][len(seen) - 1]

    monkeypatch.setattr(loop, "evaluation_nll", scripted)
    phase = _phase(select_by="evaluation", max_steps=6, checkpoint_every=3)
    metrics = run_phase(
        phase, **_kwargs(tiny_hf_student, data, tmp_path / "out", evaluation_items=items)
    )
    assert seen == [3, 3]
    assert [e["evaluation_nll"] for e in metrics["heldout_loss"]] == [2.0, 1.0]
    assert all("heldout_loss" in e for e in metrics["heldout_loss"])  # still taken, for the plot
    chosen = json.loads((tmp_path / "out" / PHASE_DONE).read_text())["selected_checkpoint"]
    assert chosen["by"] == "evaluation_nll" and chosen["step"] == 6
    assert chosen["evaluation_nll"] == 1.0 and chosen["evaluation_items"] == 3

    with pytest.raises(TrainError, match="select_by: evaluation needs"):
        run_phase(
            phase,
            **_kwargs(
                tiny_hf_student, data, tmp_path / "x", evaluation_items=_write(tmp_path / "e", [])
            ),
        )


def test_evaluation_score_matches_the_evaluation_stage(tiny_hf_student: Path) -> None:
    from labmake.evaluation.scores import conversation_nll, load_model

    model, tokenizer = load_model(tiny_hf_student)
    records = _records(3)
    stage = conversation_nll(model, tokenizer, [r["messages"] for r in records])
    samples = [encode(tokenizer, r["messages"]) for r in records]
    assert evaluation_nll(model, samples) == pytest.approx(sum(stage) / len(stage), abs=1e-6)


assert os.environ.get("WORLD_SIZE", "1") == "1", "run these tests outside a distributed launch"
