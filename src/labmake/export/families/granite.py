"""IBM Granite (3.x dense): GGUF architecture ``granite``, Llama's graph with four scales."""

from __future__ import annotations

import gguf

from labmake.export.families.base import AdjacentRope


class Granite(AdjacentRope):
    """Granite: embeddings times ``embedding_multiplier``, each residual branch times
    ``residual_multiplier``, attention scores times ``attention_multiplier`` (instead of
    1/sqrt(head_dim)) and logits divided by ``logits_scaling``; llama.cpp reads all four."""

    gguf_arch = gguf.MODEL_ARCH.GRANITE
    hf_architectures = ("GraniteForCausalLM",)

    def check(self) -> None:
        self.refuse_keys("attention_bias", "mlp_bias")
        self.refuse_rope_scaling()

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        c = self.config
        writer.add_vocab_size(int(c["vocab_size"]))
        writer.add_rope_dimension_count(self.head_dim)
        self.write_head_dim(writer)
        writer.add_rope_freq_base(self.rope_theta())
        writer.add_embedding_scale(float(c.get("embedding_multiplier", 1.0)))
        writer.add_residual_scale(float(c.get("residual_multiplier", 1.0)))
        writer.add_attention_scale(float(c.get("attention_multiplier", 1.0)))
        writer.add_logit_scale(float(c.get("logits_scaling", 1.0)))
