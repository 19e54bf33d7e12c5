"""Phi-3 / Phi-3.5 / Phi-4-mini (dense): GGUF architecture ``phi3``.

The checkpoint's fused ``qkv_proj`` and ``gate_up_proj`` are what llama.cpp's graph takes
(``attn_qkv``: q, k, v rows in that order; ``ffn_up``: gate rows then up rows), and llama.cpp
rotates heads by halves as HF does, so tensors go through unchanged.
"""

from __future__ import annotations

import gguf

from labmake.export.families.base import Family


class Phi3(Family):
    """Phi-3 without rope scaling (``longrope`` needs per-length factor tensors and an
    attention factor llama.cpp derives differently: refused). llama.cpp runs Phi-3 without a
    sliding window, so one shorter than the context caps the context length written."""

    gguf_arch = gguf.MODEL_ARCH.PHI3
    hf_architectures = ("Phi3ForCausalLM",)

    def check(self) -> None:
        self.refuse_keys("attention_bias", "mlp_bias")
        self.refuse_rope_scaling()
        self.refuse_wide_heads()
        if self.rotary_dims() % 2:
            raise self.refuse(f"partial_rotary_factor rotates {self.rotary_dims()} (odd) dims")

    def rotary_dims(self) -> int:
        factor = self.config.get("partial_rotary_factor")
        if factor is None:
            factor = self.rope_parameters().get("partial_rotary_factor", 1.0)
        return int(self.head_dim * float(factor))

    def context_length(self) -> int:
        return self.capped_to_window(self.config.get("sliding_window"))

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        writer.add_rope_dimension_count(self.rotary_dims())
        self.write_head_dim(writer)
        writer.add_rope_freq_base(self.rope_theta())
