"""Hugging Face model families -> GGUF: hyperparameters, tensor names and tensor transforms.

One small class per family (the modules of this package); the registry maps config.json's
``architectures`` and GGUF's ``general.architecture`` to them. See :mod:`.base` for what a
family does and how it refuses what llama.cpp cannot express.
"""

from __future__ import annotations

from typing import Any

import gguf

from labmake.export.families.base import ExportError, Family
from labmake.export.families.gemma import Gemma2, Gemma3
from labmake.export.families.granite import Granite
from labmake.export.families.llama import Llama, Mistral
from labmake.export.families.phi3 import Phi3
from labmake.export.families.qwen import Qwen2, Qwen3

__all__ = [
    "FAMILIES",
    "REGISTRY",
    "ExportError",
    "Family",
    "Gemma2",
    "Gemma3",
    "Granite",
    "Llama",
    "Mistral",
    "Phi3",
    "Qwen2",
    "Qwen3",
    "family_for",
    "family_for_gguf",
    "supported",
]

FAMILIES: tuple[type[Family], ...] = (
    Gemma3,
    Gemma2,
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Granite,
    Phi3,
)
REGISTRY: dict[str, type[Family]] = {a: f for f in FAMILIES for a in f.hf_architectures}


def supported() -> list[str]:
    return sorted(REGISTRY)


def family_for_gguf(arch: str, where: str) -> type[Family]:
    """The family of a GGUF architecture name (``general.architecture``); the first listed
    wins where two share one (Llama before Mistral: same graph, no overrides)."""
    by_gguf: dict[str, type[Family]] = {}
    for family in FAMILIES:
        by_gguf.setdefault(gguf.MODEL_ARCH_NAMES[family.gguf_arch], family)
    if arch not in by_gguf:
        raise ExportError(
            f"{where}: GGUF architecture {arch!r} is not supported by labmake (the tuned model "
            f"could not be exported); supported: {', '.join(sorted(by_gguf))}"
        )
    return by_gguf[arch]


def family_for(config: dict[str, Any], where: str) -> Family:
    """The exporter for a config.json, or ExportError naming the supported architectures."""
    names = config.get("architectures") or []
    arch = names[0] if names else None
    if arch not in REGISTRY:
        raise ExportError(
            f"{where}: architecture {arch!r} is not supported by labmake's GGUF exporter; "
            f"supported: {', '.join(supported())}"
        )
    return REGISTRY[arch](config, where)
