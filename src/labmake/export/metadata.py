"""Fast reading and verbatim copying of GGUF metadata (the key-value section).

gguf-py's ``GGUFReader`` builds numpy views for every array element: on the student's
262,144-token vocabulary that took 20-45 s per file on a 2-core machine, and labmake reads
that vocabulary three times per fresh build. The key-value section is a simple,
documented layout (little-endian: magic, version, counts, then key / type / value records),
so it is walked here with ``struct`` over an mmap in well under a second. Tensor data is
never touched. The test suite checks the result against ``GGUFReader`` on every file it writes.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

T = gguf.GGUFValueType
_SCALAR_FORMATS = {
    T.UINT8: "<B",
    T.INT8: "<b",
    T.UINT16: "<H",
    T.INT16: "<h",
    T.UINT32: "<I",
    T.INT32: "<i",
    T.FLOAT32: "<f",
    T.BOOL: "<?",
    T.UINT64: "<Q",
    T.INT64: "<q",
    T.FLOAT64: "<d",
}
_HEADER = struct.Struct("<4sIQQ")  # magic, version, tensor count, key-value count


class GGUFMetadataError(ValueError):
    """The file is not a GGUF whose metadata labmake can read."""


@dataclass(frozen=True)
class KV:
    """One metadata entry as stored: strings stay bytes so a copy is byte-exact."""

    vtype: gguf.GGUFValueType
    value: Any  # a scalar, bytes, or a list of them for an ARRAY
    sub_type: gguf.GGUFValueType | None = None

    def decoded(self) -> Any:
        if self.vtype == T.STRING:
            return self.value.decode("utf-8")
        if self.vtype == T.ARRAY and self.sub_type == T.STRING:
            return [v.decode("utf-8") for v in self.value]
        return self.value


def read_kv(path: str | Path, prefix: str = "") -> dict[str, KV]:
    """Every metadata entry whose key starts with ``prefix``, in file order."""
    path = Path(path)
    out: dict[str, KV] = {}
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if len(mm) < _HEADER.size:
            raise GGUFMetadataError(f"{path}: too short to be a GGUF file")
        magic, version, _n_tensors, n_kv = _HEADER.unpack_from(mm, 0)
        if magic != b"GGUF":
            raise GGUFMetadataError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
        if version not in (2, 3):
            raise GGUFMetadataError(
                f"{path}: GGUF version {version} is not supported (little-endian v2/v3 only)"
            )
        offset = _HEADER.size
        try:
            for _ in range(n_kv):
                key, offset = _read_string(mm, offset)
                (raw_type,) = struct.unpack_from("<I", mm, offset)
                entry, offset = _read_value(mm, offset + 4, T(raw_type))
                name = key.decode("utf-8")
                if name.startswith(prefix):
                    out[name] = entry
        except (struct.error, ValueError) as exc:
            raise GGUFMetadataError(f"{path}: corrupt GGUF metadata ({exc})") from None
    return out


def check_complete(path: str | Path) -> None:
    """Raise :class:`GGUFMetadataError` when the file is shorter than its own tensor table says:
    a download or copy that stopped early, which would otherwise surface later as a loader's
    complaint about the model (its architecture, a shape) instead of about the file."""
    path = Path(path)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if len(mm) < _HEADER.size or mm[:4] != b"GGUF":
            raise GGUFMetadataError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
        _magic, _version, n_tensors, n_kv = _HEADER.unpack_from(mm, 0)
        try:
            offset, alignment = _skip_kv(mm, _HEADER.size, n_kv)
            end = 0
            for _ in range(n_tensors):
                _name, offset = _read_string(mm, offset)
                (n_dims,) = struct.unpack_from("<I", mm, offset)
                dims = struct.unpack_from(f"<{n_dims}Q", mm, offset + 4)
                raw_type, start = struct.unpack_from("<IQ", mm, offset + 4 + 8 * n_dims)
                offset += 4 + 8 * n_dims + 12
                block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(raw_type)]
                end = max(end, start + int(np.prod(dims, dtype=np.int64)) // block * size)
        except (struct.error, ValueError, KeyError):
            raise GGUFMetadataError(
                f"{path}: the file is truncated or damaged (its header breaks off); download "
                "or copy it again"
            ) from None
        data_start = -(-offset // alignment) * alignment
        if data_start + end > len(mm):
            raise GGUFMetadataError(
                f"{path}: the file is truncated: its tensors need {data_start + end:,} bytes, "
                f"the file has {len(mm):,}; download or copy it again"
            )


def _skip_kv(mm: mmap.mmap, offset: int, n_kv: int) -> tuple[int, int]:
    """(the offset after the key-value section, the data alignment it sets)."""
    alignment = gguf.GGUF_DEFAULT_ALIGNMENT
    for _ in range(n_kv):
        key, offset = _read_string(mm, offset)
        (raw_type,) = struct.unpack_from("<I", mm, offset)
        entry, offset = _read_value(mm, offset + 4, T(raw_type))
        if key == gguf.Keys.General.ALIGNMENT.encode() and isinstance(entry.value, int):
            alignment = max(1, entry.value)
    if offset > len(mm):
        raise ValueError("the key-value section runs past the end of the file")
    return offset, alignment


def metadata(path: str | Path, prefix: str = "") -> dict[str, Any]:
    """Decoded metadata values (str, numbers, lists), by key."""
    return {k: kv.decoded() for k, kv in read_kv(path, prefix).items()}


def copy_kv(
    src: str | Path, writer: gguf.GGUFWriter, prefix: str, exclude: Collection[str] = ()
) -> int:
    """Add every entry of ``src`` whose key starts with ``prefix`` (and is not in ``exclude``)
    to ``writer``, unchanged; the number copied."""
    entries = {k: kv for k, kv in read_kv(src, prefix).items() if k not in exclude}
    for key, kv in entries.items():
        writer.add_key_value(key, kv.value, kv.vtype, sub_type=kv.sub_type)
    return len(entries)


def _read_string(mm: mmap.mmap, offset: int) -> tuple[bytes, int]:
    (length,) = struct.unpack_from("<Q", mm, offset)
    start = offset + 8
    return mm[start : start + length], start + length


def _read_value(mm: mmap.mmap, offset: int, vtype: gguf.GGUFValueType) -> tuple[KV, int]:
    if vtype == T.STRING:
        value, offset = _read_string(mm, offset)
        return KV(vtype, value), offset
    if vtype in _SCALAR_FORMATS:
        fmt = _SCALAR_FORMATS[vtype]
        (value,) = struct.unpack_from(fmt, mm, offset)
        return KV(vtype, value), offset + struct.calcsize(fmt)
    if vtype != T.ARRAY:
        raise ValueError(f"unknown value type {vtype}")
    raw_sub, count = struct.unpack_from("<IQ", mm, offset)
    offset += 12
    sub = T(raw_sub)
    if sub == T.STRING:
        items: list[Any] = []
        for _ in range(count):
            item, offset = _read_string(mm, offset)
            items.append(item)
        return KV(vtype, items, sub), offset
    if sub not in _SCALAR_FORMATS:
        raise ValueError(f"arrays of {sub.name} are not supported")
    dtype = np.dtype(_SCALAR_FORMATS[sub])
    end = offset + dtype.itemsize * count
    # Copy the bytes out first: a numpy view would pin the mmap open.
    return KV(vtype, np.frombuffer(mm[offset:end], dtype=dtype).tolist(), sub), end
