"""Write a merged Hugging Face folder as one GGUF (F16 or F32), with its provenance.

    merged folder (safetensors, tokenizer, tokenizer.gguf, labmake_model.json)
      --write_gguf--> model.F16.gguf --quantize (labmake.export.quantize)--> model.Q4_K_M.gguf ...

The GGUF writer is labmake's own (gguf-py's ``GGUFWriter`` plus the per-family registry in
:mod:`labmake.export.families`), not llama.cpp's converter script: the tokenizer is copied verbatim
from the folder's tokenizer.gguf (the student's source GGUF's, or for a student given as a
Hugging Face folder the one :mod:`labmake.export.tokenizer` writes; llama.cpp's converter
mislabels a tokenizer.json-only Gemma tokenizer), tensors a family derives from its config
(Llama 3's ``rope_freqs``) are added, and provenance goes into ``general.*`` and ``labmake.*``
metadata. Every output is written under a temporary name and renamed, and the same inputs give
the same bytes.

Checked by hand on the embedded Gemma 3 270M (2 shared cores): write_gguf F16 8.5 s, 543 MB,
logits vs the HF model correlate 0.9999997 (argmax equal at every position); Q8_0 5.5 s,
292 MB, 0.99958; Q4_K_M 8.3 s, 253 MB, 0.99897; both generate sensible text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf

from labmake.core import artifacts
from labmake.core.paths import BASE_MARKER, TOKENIZER_GGUF
from labmake.export import metadata
from labmake.export.families import ExportError, family_for

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

PROVENANCE_PREFIXES = ("general.", "labmake.")
# Keys the writer sets itself; provenance may not override them.
RESERVED_KEYS = frozenset(
    {
        gguf.Keys.General.ARCHITECTURE,
        gguf.Keys.General.TYPE,
        gguf.Keys.General.FILE_TYPE,
        gguf.Keys.General.QUANTIZATION_VERSION,
        gguf.Keys.General.ALIGNMENT,
    }
)
OUT_TYPES = {"F32": gguf.LlamaFileType.ALL_F32, "F16": gguf.LlamaFileType.MOSTLY_F16}


# ---------------------------------------------------------------------------------------------
# HF -> GGUF


def write_gguf(
    hf_dir: Path,
    out_path: Path,
    *,
    provenance: Mapping[str, str | int | float | bool],
    out_type: str = "F16",
) -> None:
    """Write the model in ``hf_dir`` as one GGUF with its tokenizer and ``provenance``.

    ``provenance`` keys must start with ``general.`` or ``labmake.``; all are written, sorted.
    ``out_type``: F16 (matrices in f16, norms in f32, as llama.cpp does) or F32.
    """
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    if out_type not in OUT_TYPES:
        raise ExportError(f"GGUF out_type {out_type!r} is not one of {', '.join(OUT_TYPES)}")
    _check_provenance(provenance)
    t0 = time.monotonic()
    family, tok_path, n_vocab = _read_source(hf_dir)
    with gguf_file(out_path, family.arch) as writer:
        _add_metadata(writer, hf_dir, family, tok_path, provenance, out_type)
        for name, data in _gguf_tensors(hf_dir, family, n_vocab, out_type):
            writer.add_tensor(name, data)
    log.info("wrote %s (%s, %s) in %.1f s", out_path, family.arch, out_type, time.monotonic() - t0)


@contextlib.contextmanager
def gguf_file(out: Path, arch: str) -> Iterator[gguf.GGUFWriter]:
    """A ``GGUFWriter`` for ``out``: add metadata and tensors in the block; the file is written
    under a temporary name and renamed into place when the block ends, and removed if it
    raises."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)


def _read_source(hf_dir: Path) -> tuple[Any, Path, int]:
    """The folder's architecture family, its tokenizer GGUF and vocabulary size."""
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{hf_dir}: no config.json; not a Hugging Face model folder")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    family = family_for(config, str(config_path))
    tok_path = hf_dir / TOKENIZER_GGUF
    if not tok_path.is_file():
        raise ExportError(
            f"{hf_dir}: no {TOKENIZER_GGUF}; the folder must come from labmake's base conversion "
            "or merge, which carry the tokenizer of the source GGUF"
        )
    tokens = metadata.read_kv(tok_path, gguf.Keys.Tokenizer.LIST).get(gguf.Keys.Tokenizer.LIST)
    if tokens is None:
        raise ExportError(f"{tok_path}: holds no {gguf.Keys.Tokenizer.LIST}")
    return family, tok_path, len(tokens.value)


def _add_metadata(
    writer: gguf.GGUFWriter,
    hf_dir: Path,
    family: Any,
    tok_path: Path,
    provenance: Mapping[str, str | int | float | bool],
    out_type: str,
) -> None:
    """Everything but the tensors, in the order llama.cpp's own writer uses."""
    writer.add_type(gguf.GGUFType.MODEL)
    for key, value in sorted(_general_defaults(hf_dir, provenance).items()):
        _add_value(writer, key, value)
    writer.add_file_type(OUT_TYPES[out_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    family.write_hparams(writer)
    # The chat template the model was trained with (the HF folder's) wins over the source
    # GGUF's, which a base model often lacks: llama.cpp chat needs it in the file.
    template = _chat_template(hf_dir)
    skip = {gguf.Keys.Tokenizer.CHAT_TEMPLATE} if template else set()
    metadata.copy_kv(tok_path, writer, prefix="tokenizer.", exclude=skip)
    if template:
        writer.add_chat_template(template)
    for key in sorted(k for k in provenance if k.startswith("labmake.")):
        _add_value(writer, key, provenance[key])


def _chat_template(hf_dir: Path) -> str | None:
    """The chat template saved with the tokenizer (transformers 5 file, or the older key)."""
    jinja = hf_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = hf_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def _check_provenance(provenance: Mapping[str, Any]) -> None:
    for key, value in provenance.items():
        if not key.startswith(PROVENANCE_PREFIXES):
            raise ExportError(f"provenance key {key!r} must start with 'general.' or 'labmake.'")
        if key in RESERVED_KEYS:
            raise ExportError(f"provenance key {key!r} is set by the GGUF writer itself")
        if not isinstance(value, (str, int, float, bool)):
            raise ExportError(f"provenance {key!r}: {type(value).__name__} is not str/int/float")


def _general_defaults(hf_dir: Path, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """general.* keys: the given ones, plus the source model's license where it is known."""
    general = {k: v for k, v in provenance.items() if k.startswith("general.")}
    marker = hf_dir / BASE_MARKER
    if marker.is_file():
        source = artifacts.read_json(marker).get("source_general") or {}
        if source.get(gguf.Keys.General.LICENSE):
            general.setdefault(gguf.Keys.General.LICENSE, source[gguf.Keys.General.LICENSE])
        if source.get(gguf.Keys.General.NAME):
            general.setdefault(gguf.Keys.General.BASE_MODEL_COUNT, 1)
            general.setdefault(
                gguf.Keys.General.BASE_MODEL_NAME.format(id=0), source[gguf.Keys.General.NAME]
            )
    return general


def _add_value(writer: gguf.GGUFWriter, key: str, value: str | int | float | bool) -> None:
    if isinstance(value, bool):  # before int: bool is an int
        writer.add_bool(key, value)
    elif isinstance(value, int):
        if key == gguf.Keys.General.BASE_MODEL_COUNT:
            writer.add_uint32(key, value)  # the type llama.cpp reads it as
        else:
            writer.add_int64(key, value)
    elif isinstance(value, float):
        writer.add_float64(key, value)
    else:
        writer.add_string(key, value)


def _gguf_tensors(
    hf_dir: Path, family: Any, n_vocab: int, out_type: str
) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, array) for every tensor of the model, in a fixed order."""
    import numpy as np
    import torch
    from safetensors import safe_open

    out: list[tuple[str, np.ndarray]] = []
    for path in _safetensors_files(hf_dir):
        with safe_open(path, framework="pt") as fh:
            for hf_name in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if family.skip(hf_name):
                    continue
                data = fh.get_tensor(hf_name).to(torch.float32).numpy()
                if hf_name.endswith(("embed_tokens.weight", "lm_head.weight")):
                    data = _fit_vocab(data, n_vocab, hf_name, hf_dir)
                data = family.transform(hf_name, data)
                # llama.cpp keeps 1-D tensors (norms) in f32 whatever the file type.
                dtype = np.float16 if out_type == "F16" and data.ndim > 1 else np.float32
                out.append((family.gguf_name(hf_name), np.ascontiguousarray(data, dtype=dtype)))
    out.extend(family.extra_tensors())
    out.sort(key=lambda item: _natural_key(item[0]))
    return out


def _fit_vocab(data: np.ndarray, n_vocab: int, name: str, hf_dir: Path) -> np.ndarray:
    # Models often pad the embedding matrix beyond the tokenizer; llama.cpp wants them equal.
    if data.shape[0] < n_vocab:
        raise ExportError(
            f"{hf_dir}: {name} has {data.shape[0]} rows but the tokenizer has {n_vocab} tokens"
        )
    return data[:n_vocab]


def _safetensors_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [hf_dir / s for s in shards]
    single = hf_dir / "model.safetensors"
    if not single.is_file():
        raise ExportError(f"{hf_dir}: no model.safetensors; save the model with safetensors")
    return [single]


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_metadata(gguf_path: Path) -> dict[str, Any]:
    """Every metadata value of a GGUF except arrays (the vocabulary), by key."""
    return {
        key: kv.decoded()
        for key, kv in metadata.read_kv(gguf_path).items()
        if kv.vtype != gguf.GGUFValueType.ARRAY
    }
