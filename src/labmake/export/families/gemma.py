"""Gemma 2 and Gemma 3 text models: GGUF architectures ``gemma2`` and ``gemma3``."""

from __future__ import annotations

from typing import Any, ClassVar

import gguf
import numpy as np

from labmake.export.families.base import Family

SLIDING, FULL = "sliding_attention", "full_attention"


class Gemma(Family):
    """What Gemma 2 and 3 share: (1 + w) norms, tied output, tanh GELU, query scaling."""

    activation = ("hidden_activation", "gelu_pytorch_tanh")
    # llama.cpp scales queries by 1/sqrt(head_dim), except for the 27B model (known by its
    # layer count), which it scales by 1/sqrt(hidden_size / heads).
    layers_27b: ClassVar[int]

    def query_scalar(self) -> int:
        if self.n_blocks == self.layers_27b:
            return int(self.config["hidden_size"]) // self.n_head
        return self.head_dim

    def check(self) -> None:
        scalar = self.config.get("query_pre_attn_scalar", self.head_dim)
        if int(scalar) != self.query_scalar():
            raise self.refuse(
                f"query_pre_attn_scalar {scalar} differs from the {self.query_scalar()} "
                "llama.cpp uses"
            )
        if len(self.layer_types()) != self.n_blocks:
            raise self.refuse("layer_types does not list one type per layer")

    def layer_types(self) -> list[str]:
        return list(self.config.get("layer_types") or [])

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        self.write_head_dim(writer, always=True)

    def skip(self, hf_name: str) -> bool:
        # Gemma always ties the output layer to the embeddings.
        return super().skip(hf_name) or hf_name == "lm_head.weight"

    def transform(self, hf_name: str, data: np.ndarray) -> np.ndarray:
        # Gemma's RMSNorm multiplies by (1 + weight); llama.cpp multiplies by the stored weight.
        if hf_name.endswith("norm.weight"):
            return data + 1.0
        return data


class Gemma2(Gemma):
    """Gemma 2: attention and final logit soft-capping; even layers slide, odd ones are
    global (llama.cpp's fixed pattern for this architecture)."""

    gguf_arch = gguf.MODEL_ARCH.GEMMA2
    hf_architectures = ("Gemma2ForCausalLM",)
    layers_27b = 46

    def layer_types(self) -> list[str]:
        return list(self.config.get("layer_types") or self._alternating())

    def _alternating(self) -> list[str]:
        return [SLIDING if i % 2 == 0 else FULL for i in range(self.n_blocks)]

    def check(self) -> None:
        super().check()
        # llama.cpp's Gemma 2 always caps and slides; its defaults stand in for a missing key.
        for key in ("attn_logit_softcapping", "final_logit_softcapping", "sliding_window"):
            if not self.config.get(key):
                raise self.refuse(f"{key} is not set (llama.cpp's Gemma 2 always applies it)")
        if self.layer_types() != self._alternating():
            raise self.refuse("layer_types is not sliding/full alternating from layer 0")
        self.refuse_rope_scaling()

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        c = self.config
        writer.add_rope_freq_base(self.rope_theta())
        writer.add_attn_logit_softcapping(float(c["attn_logit_softcapping"]))
        writer.add_final_logit_softcapping(float(c["final_logit_softcapping"]))
        writer.add_sliding_window(int(c["sliding_window"]))


class Gemma3(Gemma):
    """Gemma 3 text models (the default student, Gemma 3 270M, among them)."""

    gguf_arch = gguf.MODEL_ARCH.GEMMA3
    hf_architectures = ("Gemma3ForCausalLM",)
    layers_27b = 62

    def layer_types(self) -> list[str]:
        types = self.config.get("layer_types")
        if types:
            return list(types)
        # transformers 4.x configs give only the period: every Nth layer is global.
        period = int(self.config.get("sliding_window_pattern") or 6)
        return [FULL if (i + 1) % period == 0 else SLIDING for i in range(self.n_blocks)]

    def check(self) -> None:
        self.refuse_keys("attn_logit_softcapping", "use_bidirectional_attention")
        super().check()
        for kind in (FULL, SLIDING):
            rope_type = self.rope_parameters(kind)["rope_type"]
            if rope_type != "default":
                raise self.refuse(f"rope scaling {rope_type!r} for {kind} layers is set")

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        writer.add_rope_freq_base(self.rope_theta(FULL, default=1e6))
        types = self.layer_types()
        window = self.config.get("sliding_window")
        if window and SLIDING in types:
            writer.add_sliding_window(int(window))
            # One flag per layer, as config.json has it, rather than llama.cpp's default period.
            writer.add_sliding_window_pattern([t == SLIDING for t in types])
            local = self.rope_parameters(SLIDING).get("rope_theta")
            base_swa = local or self.config.get("rope_local_base_freq", 10000.0)
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
        scalar = (
            int(config["hidden_size"]) // int(config["num_attention_heads"])
            if n_layers == cls.layers_27b
            else head_dim
        )
        rope = gguf.Keys.Rope
        full_theta = meta.get(rope.FREQ_BASE.format(arch=arch), 1_000_000.0)
        local_theta = meta.get(rope.FREQ_BASE_SWA.format(arch=arch), 10_000.0)
        return {
            "layer_types": [SLIDING if s else FULL for s in sliding],
            "query_pre_attn_scalar": scalar,
            "rope_parameters": {
                FULL: {"rope_type": "default", "rope_theta": float(full_theta)},
                SLIDING: {"rope_type": "default", "rope_theta": float(local_theta)},
            },
        }
