"""Llama (2 and 3.x) and Mistral: GGUF architecture ``llama``."""

from __future__ import annotations

import math

import gguf
import numpy as np

from labmake.export.families.base import AdjacentRope


class Llama(AdjacentRope):
    """Llama models without biases; rope plain or Llama 3.x's ``llama3`` scaling.

    llama.cpp applies Llama 3.x's frequency scaling through a ``rope_freqs`` tensor: one
    divisor per rotated pair, computed here from the rope parameters.
    """

    gguf_arch = gguf.MODEL_ARCH.LLAMA
    hf_architectures = ("LlamaForCausalLM",)

    def check(self) -> None:
        self.refuse_keys("attention_bias", "mlp_bias", "sliding_window")
        self.refuse_rope_scaling(("default", "llama3"))
        if self.rope_parameters().get("partial_rotary_factor", 1.0) != 1.0:
            raise self.refuse("partial_rotary_factor is set")

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        super().write_hparams(writer)
        writer.add_vocab_size(int(self.config["vocab_size"]))
        writer.add_rope_dimension_count(self.head_dim)
        self.write_head_dim(writer)
        writer.add_rope_freq_base(self.rope_theta())

    def extra_tensors(self) -> list[tuple[str, np.ndarray]]:
        params = self.rope_parameters()
        if params["rope_type"] != "llama3":
            return []
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight"
        return [(name, self._llama3_divisors())]

    def _llama3_divisors(self) -> np.ndarray:
        """inv_freq / llama3-scaled inv_freq, per rotated pair: long wavelengths (beyond the
        original context / low_freq_factor) slow down by ``factor``, short ones (below it /
        high_freq_factor) keep their speed, those between blend the two linearly in
        original context / wavelength."""
        p = self.rope_parameters()
        factor = float(p["factor"])
        low, high = float(p["low_freq_factor"]), float(p["high_freq_factor"])
        original = float(p["original_max_position_embeddings"])
        exponents = np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim
        wavelength = 2 * math.pi * self.rope_theta() ** exponents
        blend = (original / wavelength - low) / (high - low)
        divisor = 1.0 / ((1.0 - blend) / factor + blend)
        divisor = np.where(wavelength < original / high, 1.0, divisor)
        divisor = np.where(wavelength > original / low, factor, divisor)
        return divisor.astype(np.float32)


class Mistral(Llama):
    """Mistral: Llama's graph; a sliding window only where it changes nothing.

    llama.cpp's ``llama`` architecture has no sliding window. A window at least as long as
    the context is a no-op; a shorter one (Mistral 7B v0.1: 4096 of 32768) caps the context
    length written to the GGUF at the window, within which both attend to every token.
    """

    hf_architectures = ("MistralForCausalLM",)

    def check(self) -> None:
        self.refuse_keys("attention_bias", "mlp_bias")
        self.refuse_rope_scaling()

    def context_length(self) -> int:
        return self.capped_to_window(self.config.get("sliding_window"))
