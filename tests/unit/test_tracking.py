"""Run tracking: TensorBoard event files written without TensorBoard, read back by it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from labmake.core import tracking


def _records(path: Path) -> list[bytes]:
    """Every TFRecord of an event file, each checked against its two CRCs."""
    data, out, at = path.read_bytes(), [], 0
    while at < len(data):
        header = data[at : at + 8]
        (length,) = struct.unpack("<Q", header)
        assert data[at + 8 : at + 12] == tracking._masked(header)
        body = data[at + 12 : at + 12 + length]
        assert data[at + 12 + length : at + 16 + length] == tracking._masked(body)
        out.append(body)
        at += 16 + length
    return out


def test_crc32c_matches_the_standard_check_value():
    assert tracking.crc32c(b"123456789") == 0xE3069283  # the CRC-32C catalogue's check value
    assert tracking.crc32c(b"") == 0


def test_events_are_valid_records_and_a_rerun_replaces_the_run(tmp_path: Path):
    with tracking.open_run("train-knowledge", "tensorboard", root=tmp_path) as run:
        run.scalar("train/loss", 2.5, 1)
        run.scalars("train", {"loss": 2.0, "learning_rate": 1e-4, "flag": True, "name": "x"}, 2)
        run.text("models", "0: base\n1: tuned")
    files = list((tmp_path / "train-knowledge").iterdir())
    assert len(files) == 1 and "tfevents" in files[0].name
    records = _records(files[0])
    assert len(records) == 1 + 1 + 2 + 1  # version, loss, two numbers (not the bool/str), text
    assert b"brain.Event:2" in records[0] and b"train/loss" in records[1]
    assert struct.pack("<f", 2.5) in records[1]
    with tracking.open_run("train-knowledge", "tensorboard", root=tmp_path) as run:
        run.scalar("train/loss", 1.0, 1)
    assert len(list((tmp_path / "train-knowledge").iterdir())) == 1  # replaced, not appended


def test_tracking_none_writes_nothing(tmp_path: Path):
    with tracking.open_run("evaluation", "none", root=tmp_path) as run:
        run.scalar("x", 1.0, 0)
        run.text("t", "hello")
    assert not any(tmp_path.iterdir())
    assert tracking.kind_of({}) == "tensorboard"  # the declared default
    assert tracking.kind_of({"tracking": "none"}) == "none"
    with pytest.raises(ValueError, match="tracking"):
        tracking.open_run("x", "mlflow", root=tmp_path)


def test_tensorboard_reads_the_events_back(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="the viewer is optional: labmake[tracking]")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with tracking.open_run("evaluation", "tensorboard", root=tmp_path) as run:
        for step, value in enumerate([3.0, 2.5, 2.25]):
            run.scalar("reference_nll/overall", value, step)
        run.text("models", "0: base")
    acc = EventAccumulator(str(tmp_path / "evaluation"))
    acc.Reload()
    scalars = acc.Scalars("reference_nll/overall")
    assert [(s.step, s.value) for s in scalars] == [(0, 3.0), (1, 2.5), (2, 2.25)]
    assert "models" in acc.Tags()["tensors"]
