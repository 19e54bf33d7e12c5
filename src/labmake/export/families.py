"""Hugging Face model families -> GGUF: hyperparameters, tensor names and tensor transforms.

One small class per family. Each reads the model's ``config.json`` (a plain dict: exporting
needs no transformers import), writes the family's hyperparameters with ``gguf.GGUFWriter``'s
typed methods (so every key comes from ``gguf.Keys``), names tensors with
``gguf.get_tensor_name_map`` and applies the per-tensor changes llama.cpp expects. Features a
family cannot express in llama.cpp are refused with a message instead of producing a GGUF that
loads but computes something else.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gguf
import numpy as np


class ExportError(ValueError):
    """The model cannot be written as a GGUF (unsupported architecture or feature)."""


class Family:
    """Base class: what every decoder-only family shares."""

    gguf_arch: ClassVar[gguf.MODEL_ARCH]
    hf_architectures: ClassVar[tuple[str, ...]]

    def __init__(self, config: dict[str, Any], where: str) -> None:
        self.config = config
        self.where = where
        self.n_blocks = int(config["num_hidden_layers"])
        self.n_head = int(config["num_attention_heads"])
        self.n_head_kv = int(config.get("num_key_value_heads") or self.n_head)
        self.head_dim = int(config.get("head_dim") or config["hidden_size"] // self.n_head)
        self.tied = bool(config.get("tie_word_embeddings", False))
        self._names = gguf.get_tensor_name_map(self.gguf_arch, self.n_blocks)
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

    def check(self) -> None:
        """Raise ExportError for a configuration llama.cpp would compute differently."""

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        c = self.config
        writer.add_context_length(int(c["max_position_embeddings"]))
        writer.add_embedding_length(int(c["hidden_size"]))
        writer.add_block_count(self.n_blocks)
        writer.add_feed_forward_length(int(c["intermediate_size"]))
        writer.add_head_count(self.n_head)
        writer.add_head_count_kv(self.n_head_kv)
        writer.add_layer_norm_rms_eps(float(c.get("rms_norm_eps", 1e-6)))

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

    @classmethod
    def hf_overrides(cls, meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """config.json values to correct after transformers loaded a GGUF of this family.

        ``meta``: the GGUF's ``{arch}.*`` metadata. transformers' GGUF loader leaves some
        hyperparameters at their defaults; llama.cpp's reading of the file is the reference.
        """
        return {}


class Gemma3(Family):
    """Gemma 3 text models (the default student, Gemma 3 270M, among them)."""

    gguf_arch = gguf.MODEL_ARCH.GEMMA3
    hf_architectures = ("Gemma3ForCausalLM",)

    def layer_types(self) -> list[str]:
        types = self.config.get("layer_types")
        if types:
            return list(types)
        # transformers 4.x configs give only the period: every Nth layer is global.
        period = int(self.config.get("sliding_window_pattern") or 6)
        return [
            "full_attention" if (i + 1) % period == 0 else "sliding_attention"
            for i in range(self.n_blocks)
        ]

    def check(self) -> None:
        c = self.config
        if c.get("attn_logit_softcapping") is not None:
            raise self.refuse("attn_logit_softcapping is set (Gemma 2 style)")
        if c.get("use_bidirectional_attention"):
            raise self.refuse("bidirectional attention (an embedding model) is set")
        if c.get("hidden_activation", "gelu_pytorch_tanh") != "gelu_pytorch_tanh":
            raise self.refuse(f"hidden_activation {c.get('hidden_activation')!r} is not gelu")
        # llama.cpp scales queries by 1/sqrt(head_dim) for every Gemma 3 but the 27B.
        scalar = c.get("query_pre_attn_scalar", self.head_dim)
        if int(scalar) != self.head_dim:
            raise self.refuse(
                f"query_pre_attn_scalar {scalar} differs from head_dim {self.head_dim}"
            )
        for kind in ("full_attention", "sliding_attention"):
            rope_type = self.rope_parameters(kind)["rope_type"]
            if rope_type != "default":
                raise self.refuse(f"rope scaling {rope_type!r} for {kind} layers is set")
        if len(self.layer_types()) != self.n_blocks:
            raise self.refuse("layer_types does not list one type per layer")

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        writer.add_key_length(self.head_dim)
        writer.add_value_length(self.head_dim)
        full = self.rope_parameters("full_attention")
        local = self.rope_parameters("sliding_attention")
        writer.add_rope_freq_base(float(full.get("rope_theta", self.config.get("rope_theta", 1e6))))
        types = self.layer_types()
        window = self.config.get("sliding_window")
        if window and "sliding_attention" in types:
            writer.add_sliding_window(int(window))
            # One flag per layer, as config.json has it, rather than llama.cpp's default period.
            writer.add_sliding_window_pattern([t == "sliding_attention" for t in types])
            base_swa = local.get("rope_theta", self.config.get("rope_local_base_freq", 10000.0))
            writer.add_rope_freq_base_swa(float(base_swa))
        if softcap := self.config.get("final_logit_softcapping"):
            writer.add_final_logit_softcapping(float(softcap))

    @classmethod
    def hf_overrides(cls, meta: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        arch = gguf.MODEL_ARCH_NAMES[cls.gguf_arch]
        attn = gguf.Keys.Attention
        n_layers = int(config["num_hidden_layers"])
        window = meta.get(attn.SLIDING_WINDOW.format(arch=arch))
        pattern = meta.get(attn.SLIDING_WINDOW_PATTERN.format(arch=arch))
        # Which layers slide, as llama.cpp decides it: a per-layer flag list if the file has
        # one, else a period (default 6) whose last layer is global; no window, no sliding.
        if not window:
            sliding = [False] * n_layers
        elif isinstance(pattern, list):
            sliding = [bool(flag) for flag in pattern]
        else:
            period = int(pattern or 6)
            sliding = [i % period < period - 1 for i in range(n_layers)]
        head_dim = int(meta.get(attn.KEY_LENGTH.format(arch=arch)) or config["head_dim"])
        # llama.cpp scales queries by 1/sqrt(head_dim), except for the 62-layer 27B model.
        scalar = (
            int(config["hidden_size"]) // int(config["num_attention_heads"])
            if n_layers == 62
            else head_dim
        )
        rope = gguf.Keys.Rope
        full_theta = meta.get(rope.FREQ_BASE.format(arch=arch), 1_000_000.0)
        local_theta = meta.get(rope.FREQ_BASE_SWA.format(arch=arch), 10_000.0)
        return {
            "layer_types": ["sliding_attention" if s else "full_attention" for s in sliding],
            "query_pre_attn_scalar": scalar,
            "rope_parameters": {
                "full_attention": {"rope_type": "default", "rope_theta": float(full_theta)},
                "sliding_attention": {"rope_type": "default", "rope_theta": float(local_theta)},
            },
        }

    def skip(self, hf_name: str) -> bool:
        # Gemma always ties the output layer to the embeddings.
        return super().skip(hf_name) or hf_name == "lm_head.weight"

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        # Gemma's RMSNorm multiplies by (1 + weight); llama.cpp multiplies by the stored weight.
        if hf_name.endswith("norm.weight"):
            return data + 1.0
        return data


class Llama(Family):
    """Llama and Mistral style models (no sliding window, no biases)."""

    gguf_arch = gguf.MODEL_ARCH.LLAMA
    hf_architectures = ("LlamaForCausalLM", "MistralForCausalLM")

    def check(self) -> None:
        c = self.config
        if c.get("hidden_act", "silu") != "silu":
            raise self.refuse(f"hidden_act {c.get('hidden_act')!r} is not silu")
        if c.get("attention_bias") or c.get("mlp_bias"):
            raise self.refuse("attention or MLP biases are set")
        window = c.get("sliding_window")
        if window and int(window) < int(c["max_position_embeddings"]):
            raise self.refuse(f"sliding_window {window} is set (llama.cpp's llama has none)")
        rope_type = self.rope_parameters()["rope_type"]
        if rope_type != "default":
            raise self.refuse(f"rope scaling {rope_type!r} is set")

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        writer.add_vocab_size(int(self.config["vocab_size"]))
        writer.add_rope_dimension_count(self.head_dim)
        if self.head_dim != int(self.config["hidden_size"]) // self.n_head:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        theta = self.rope_parameters().get("rope_theta", self.config.get("rope_theta", 10000.0))
        writer.add_rope_freq_base(float(theta))

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        # HF rotates the two halves of each head; llama.cpp rotates adjacent pairs. Reorder the
        # rows of q and k within each head so both compute the same rotation.
        if hf_name.endswith("self_attn.q_proj.weight"):
            return _interleave_halves(data, self.n_head)
        if hf_name.endswith("self_attn.k_proj.weight"):
            return _interleave_halves(data, self.n_head_kv)
        return data


def _interleave_halves(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Per head, rows [a0..a(n-1), b0..b(n-1)] -> [a0, b0, a1, b1, ...]."""
    rows = w.shape[0]
    half = rows // n_heads // 2
    return w.reshape(n_heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


FAMILIES: tuple[type[Family], ...] = (Gemma3, Llama)
REGISTRY: dict[str, type[Family]] = {a: f for f in FAMILIES for a in f.hf_architectures}


def supported() -> list[str]:
    return sorted(REGISTRY)


def family_for_gguf(arch: str, where: str) -> type[Family]:
    """The family of a GGUF architecture name (``general.architecture``)."""
    by_gguf = {gguf.MODEL_ARCH_NAMES[f.gguf_arch]: f for f in FAMILIES}
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
