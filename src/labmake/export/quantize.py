"""Quantize an F16 GGUF with llama.cpp (one file per type in ``export.quantizations``), and the
smallest proof that a GGUF loads and runs."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

import gguf

from labmake.export.families import ExportError

log = logging.getLogger(__name__)

# params.yaml names -> llama.cpp file types (the same numbers as gguf.LlamaFileType).
QUANT_TYPES = {
    "F16": gguf.LlamaFileType.MOSTLY_F16,
    "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "Q6_K": gguf.LlamaFileType.MOSTLY_Q6_K,
    "Q5_K_M": gguf.LlamaFileType.MOSTLY_Q5_K_M,
    "Q5_0": gguf.LlamaFileType.MOSTLY_Q5_0,
    "Q4_K_M": gguf.LlamaFileType.MOSTLY_Q4_K_M,
    "Q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}


def quantize(src: Path, dst: Path, qtype: str, n_threads: int = 2) -> None:
    """Quantize GGUF ``src`` to ``dst`` with llama.cpp; metadata is carried over."""
    if qtype not in QUANT_TYPES:
        raise ExportError(
            f"unknown quantization {qtype!r}; use one of {', '.join(sorted(QUANT_TYPES))}"
        )
    import llama_cpp

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ExportError(f"{src}: no such GGUF to quantize")
    t0 = time.monotonic()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(QUANT_TYPES[qtype])
    params.nthread = n_threads
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        rc = llama_cpp.llama_model_quantize(
            str(src).encode(), str(tmp).encode(), ctypes.byref(params)
        )
        if rc != 0:
            raise ExportError(f"llama.cpp failed to quantize {src} to {qtype} (code {rc})")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("quantized %s -> %s (%s) in %.1f s", src.name, dst.name, qtype, time.monotonic() - t0)


def smoke_generate(gguf_path: Path, prompt: str, max_tokens: int = 16, n_threads: int = 2) -> str:
    """Greedy completion of ``prompt`` by the GGUF in llama.cpp: proof that it loads and runs."""
    from labmake.core.llama import open_llama

    llm = open_llama(gguf_path, n_ctx=512, n_threads=n_threads, seed=0)
    try:
        out = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    finally:
        llm.close()
    return out["choices"][0]["text"]
