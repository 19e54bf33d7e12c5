"""Qwen 2 / 2.5 and Qwen 3 (dense): GGUF architectures ``qwen2`` and ``qwen3``.

llama.cpp rotates Qwen's heads by halves, as HF does, so q and k keep their layout.
"""

from __future__ import annotations

from typing import ClassVar

import gguf

from labmake.export.families.base import Family


class Qwen2(Family):
    """Qwen 2 / 2.5: biases on the q, k and v projections (llama.cpp loads them)."""

    gguf_arch = gguf.MODEL_ARCH.QWEN2
    hf_architectures = ("Qwen2ForCausalLM",)
    explicit_head_dim: ClassVar[bool] = False

    def check(self) -> None:
        self.refuse_rope_scaling()
        if not self.explicit_head_dim:
            self.refuse_wide_heads()

    def context_length(self) -> int:
        # llama.cpp's Qwen graphs have no sliding window: cap the context where layers slide.
        sliding = self.config.get("use_sliding_window") or "sliding_attention" in (
            self.config.get("layer_types") or []
        )
        return self.capped_to_window(self.config.get("sliding_window") if sliding else None)

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        self.write_head_dim(writer, always=self.explicit_head_dim)
        writer.add_rope_freq_base(self.rope_theta())


class Qwen3(Qwen2):
    """Qwen 3: RMS norms on each head's queries and keys, no biases, an explicit head_dim."""

    gguf_arch = gguf.MODEL_ARCH.QWEN3
    hf_architectures = ("Qwen3ForCausalLM",)
    explicit_head_dim = True

    def check(self) -> None:
        self.refuse_keys("attention_bias")
        super().check()
