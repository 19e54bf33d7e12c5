"""What every decoder-only family shares: config reading, refusals, tensor names, rope checks.

Each family reads the model's ``config.json`` (a plain dict: exporting needs no transformers
import), writes its hyperparameters with ``gguf.GGUFWriter``'s typed methods (so every key
comes from ``gguf.Keys``), names tensors with ``gguf.get_tensor_name_map`` and applies the
per-tensor changes llama.cpp expects. Features a family cannot express in llama.cpp are
refused with a message naming the config key, instead of producing a GGUF that loads but
computes something else.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import gguf
import numpy as np

log = logging.getLogger(__name__)


class ExportError(ValueError):
    """The model cannot be written as a GGUF (unsupported architecture or feature)."""


class Family:
    """Base class: what every decoder-only family shares."""

    gguf_arch: ClassVar[gguf.MODEL_ARCH]
    hf_architectures: ClassVar[tuple[str, ...]]
    # The activation llama.cpp's graph of this architecture applies in the MLP.
    activation: ClassVar[tuple[str, str]] = ("hidden_act", "silu")

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self.config = config
        self.where = where
        self.n_blocks = int(config["num_hidden_layers"])
        self.n_head = int(config["num_attention_heads"])
        self.n_head_kv = int(config.get("num_key_value_heads") or self.n_head)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.n_head)
        self.tied = bool(config.get("tie_word_embeddings", False))
        self._names = gguf.get_tensor_name_map(self.gguf_arch, self.n_blocks)
        key, expected = self.activation
        if config.get(key, expected) != expected:
            raise self.refuse(f"{key} {config.get(key)!r} is not {expected}")
        self.check()

    @property
    def arch(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def refuse(self, what: str) -> ExportError:
        return ExportError(f"{self.where}: {what}; labmake cannot export this model to GGUF")

    def rope_parameters(self, layer_type: str | None = None) -> dict[str, Any]:
        """Rope settings, from transformers 5 ``rope_parameters`` or the older flat keys."""
        params = dict(self.config.get("rope_parameters") or self.config.get("rope_scaling") or {})
        if layer_type is not None and layer_type in params:
            params = dict(params[layer_type])
        params.setdefault("rope_type", params.get("type", "default"))
        return params

    def rope_theta(self, layer_type: str | None = None, default: float = 10000.0) -> float:
        theta = self.rope_parameters(layer_type).get("rope_theta")
        return float(theta if theta is not None else self.config.get("rope_theta", default))

    def refuse_rope_scaling(self, allowed: tuple[str, ...] = ("default",)) -> None:
        rope_type = self.rope_parameters()["rope_type"]
        if rope_type not in allowed:
            raise self.refuse(f"rope type {rope_type!r} (rope_parameters / rope_scaling) is set")

    def refuse_keys(self, *keys: str) -> None:
        """Refuse config keys that are set (true or non-empty) but llama.cpp ignores."""
        for key in keys:
            if self.config.get(key):
                raise self.refuse(f"{key} {self.config[key]!r} is set")

    def refuse_wide_heads(self) -> None:
        """For llama.cpp graphs that size q and the output projection as hidden x hidden."""
        hidden = int(self.config["hidden_size"])
        if self.head_dim * self.n_head != hidden:
            raise self.refuse(
                f"head_dim {self.head_dim} x {self.n_head} heads is not hidden_size {hidden} "
                f"(llama.cpp's {self.arch} assumes it is)"
            )

    def check(self) -> None:
        """Raise ExportError for a configuration llama.cpp would compute differently."""

    def context_length(self) -> int:
        return int(self.config["max_position_embeddings"])

    def capped_to_window(self, window: Any) -> int:
        """The context to declare for a model whose every layer attends within ``window``
        (a llama.cpp architecture without sliding windows): up to the window, attention sees
        every earlier token in both, so declaring no more than the window keeps them equal."""
        context = int(self.config["max_position_embeddings"])
        if window and int(window) < context:
            log.warning("%s: sliding_window %s: context length capped to it", self.where, window)
            return int(window)
        return context

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        c = self.config
        writer.add_context_length(self.context_length())
        writer.add_embedding_length(int(c["hidden_size"]))
        writer.add_block_count(self.n_blocks)
        writer.add_feed_forward_length(int(c["intermediate_size"]))
        writer.add_head_count(self.n_head)
        writer.add_head_count_kv(self.n_head_kv)
        writer.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))

    def write_head_dim(self, writer: gguf.GGUFWriter, always: bool = False) -> None:
        """Key/value widths, where they are not hidden_size / heads (or ``always``)."""
        if always or self.head_dim != int(self.config["hidden_size"]) // self.n_head:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)

    def skip(self, hf_name: str) -> bool:
        """Tensors that have no GGUF counterpart (derived or tied)."""
        return hf_name.endswith("rotary_emb.inv_freq") or (
            self.tied and hf_name == "lm_head.weight"
        )

    def gguf_name(self, hf_name: str) -> str:
        name = self._names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise self.refuse(f"tensor {hf_name!r} has no {self.arch} GGUF name")
        return name

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        return data

    def extra_tensors(self) -> list[tuple[str, np.ndarray]]:
        """Tensors llama.cpp wants that the checkpoint does not hold (derived from config)."""
        return []

    @classmethod
    def hf_overrides(cls, meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """config.json values to correct after transformers loaded a GGUF of this family.

        ``meta``: the GGUF's ``{arch}.*`` metadata. transformers' GGUF loader leaves some
        hyperparameters at their defaults; llama.cpp's reading of the file is the reference.
        """
        return {}


class AdjacentRope(Family):
    """Families llama.cpp rotates in adjacent pairs (rope type "norm": Llama, Granite).

    HF rotates the two halves of each head; the rows of q and k are reordered within each
    head so both compute the same rotation. Families llama.cpp rotates by halves ("neox":
    Qwen, Phi-3, Gemma) keep HF's layout.
    """

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        if hf_name.endswith("self_attn.q_proj.weight"):
            return interleave_halves(data, self.n_head)
        if hf_name.endswith("self_attn.k_proj.weight"):
            return interleave_halves(data, self.n_head_kv)
        return data


def interleave_halves(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Per head, rows [a0..a(n-1), b0..b(n-1)] -> [a0, b0, a1, b1, ...]."""
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
