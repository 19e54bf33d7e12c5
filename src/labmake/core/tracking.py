"""Run tracking: training and evaluation metrics as TensorBoard event files under build/tracking.

``tensorboard --logdir build/tracking`` shows them (``pip install 'labmake[tracking]'``). The
files are written here, with no dependency: an event file is a sequence of TFRecords (length,
masked CRC-32C of the length, data, masked CRC-32C of the data), each an ``Event`` protocol
buffer holding a wall time, a step and a ``Summary`` of scalar or text values. Only those few
fields are encoded, by hand (``tensorboard``'s own reader reads them back in the tests).

Chosen over an MLflow file store by measured install weight for the viewer on top of labmake's
lock: TensorBoard 6 packages, 20 MB of downloads, 55 MB installed; MLflow 35 packages, 32 MB,
177 MB. TensorBoard shows per-step curves, several runs overlaid and text, which is what a
build has to show.

Tracking is never an input or an output of a rule: each job replaces its own run folder
(``build/tracking/<run>/``), wall times live only there, and ``tracking: none`` writes nothing,
so the model's bytes never depend on it.
"""

from __future__ import annotations

import shutil
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labmake.core import paths

KINDS = ("tensorboard", "none")


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord files use."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> bytes:
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def record(data: bytes) -> bytes:
    """One TFRecord."""
    length = struct.pack("<Q", len(data))
    return length + _masked(length) + data + _masked(data)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protocol-buffer field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, body: bytes) -> bytes:
    """``Event``: wall_time (1, double), step (2, int64), then the body's fields."""
    return b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step) + body


def scalar_value(tag: str, value: float) -> bytes:
    """``Summary.Value`` with tag (1) and simple_value (2, float)."""
    return _field(1, tag.encode("utf-8")) + b"\x15" + struct.pack("<f", float(value))


def text_value(tag: str, text: str) -> bytes:
    """``Summary.Value`` with a string tensor (8) and the text plugin's metadata (9)."""
    tensor = b"\x08\x07" + _field(2, b"") + _field(8, text.encode("utf-8"))  # DT_STRING, scalar
    metadata = _field(1, _field(1, b"text"))  # plugin_data { plugin_name: "text" }
    return _field(1, tag.encode("utf-8")) + _field(8, tensor) + _field(9, metadata)


class Tracker:
    """One run's event file. Every value is flushed at once, so a viewer follows training live."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"events.out.tfevents.{int(time.time())}.labmake"
        self._fh = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._write(_event(time.time(), 0, _field(3, b"brain.Event:2")))

    def _write(self, event: bytes) -> None:
        self._fh.write(record(event))
        self._fh.flush()

    def scalar(self, tag: str, value: float | None, step: int) -> None:
        if value is not None:
            self._write(_event(time.time(), step, _field(5, _field(1, scalar_value(tag, value)))))

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.scalar(f"{prefix}/{key}", value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self._write(_event(time.time(), step, _field(5, _field(1, text_value(tag, text)))))

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoTracker(Tracker):
    """``tracking: none``, or a process that is not the first: writes nothing."""

    def __init__(self) -> None:
        self.path = None  # type: ignore[assignment]

    def _write(self, event: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def kind_of(config: Mapping[str, Any]) -> str:
    """params.yaml's ``tracking`` (its declared default when the file leaves it out)."""
    from labmake.core.config import BuildConfig

    return str(config.get("tracking", BuildConfig.__dataclass_fields__["tracking"].default))


def open_run(name: str, kind: str | None, root: str | Path = paths.TRACKING) -> Tracker:
    """The tracker of run ``name`` (e.g. ``train-knowledge``), its folder emptied first so that
    a re-run job replaces its own run; a no-op tracker for ``tracking: none``."""
    if kind in (None, "none"):
        return NoTracker()
    if kind not in KINDS:
        raise ValueError(f"tracking {kind!r} is not one of {list(KINDS)}")
    folder = Path(root) / name
    shutil.rmtree(folder, ignore_errors=True)
    return Tracker(folder)
