"""Tiny models of every exportable family, each with a real small tokenizer of its kind.

Tokenizers (saved as Hugging Face tokenizer folders, trained on tiny.CORPUS):
- SentencePiece (Llama 2, Mistral, Phi-3, Gemma): tiny's SentencePiece BPE model (byte
  fallback, Gemma's special-token layout), with tokenizer.model beside tokenizer.json. Gemma
  keeps spaces as they are; the others put "▁" before text with the legacy Prepend
  normalizer, the form of Llama 2's own tokenizer.json (loaded as saved, not rebuilt by
  transformers' LlamaTokenizer, whose Metaspace llama.cpp cannot express).
- byte-level BPE (Llama 3, Qwen 2, Qwen 3, Granite): trained with the tokenizers library with
  the family's real pre-tokenizer (Llama 3's and Qwen 2's Split regex, Granite's digit split
  before GPT-2's regex) and byte-level decoder, 512 tokens with the family's special tokens.

Models: 2 layers, hidden 64, head_dim 32 (widths multiples of 32 so Q8_0 applies), four query
heads and two KV heads. Norm weights get random values and q/k projections are sharpened so a
wrong norm offset or a wrong rotary layout in the export changes the logits.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tiny

N_VOCAB = 512
# Llama 3's and Qwen 2's pre-tokenizer regexes as their tokenizer.json files hold them.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
    r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
# Added to tiny.CORPUS for the byte-level tokenizers: text where the families' regexes split
# differently (digit runs, punctuation before letters, upper-case contractions, blank lines),
# so each vocabulary learns merges that a wrong pre-tokenizer in llama.cpp would miss.
BPE_EXTRA = 10 * (
    'Call 1234567 or 2468135 now. (hello) "Quote" [list] x.The end.\n'
    "IT'LL BE FINE, WE'VE SEEN IT. They're here; you'll see.\n\n\n  Next   line\n"
)
BASE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}


@dataclass(frozen=True)
class Spec:
    """One family's tiny model: transformers class, config overrides, tokenizer kind."""

    name: str
    model_class: str
    tokenizer: str  # "gemma", "llama" (SentencePiece) or "llama3", "qwen2", "refact" (BPE)
    config: dict[str, Any] = field(default_factory=dict)
    specials: tuple[str, ...] = ()  # BPE: special tokens, the first is bos, the second eos
    add_bos: bool = True
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")


SPECS = {
    s.name: s
    for s in (
        Spec("llama2", "LlamaForCausalLM", "llama"),
        Spec(
            "llama3",
            "LlamaForCausalLM",
            "llama3",
            config={
                "rope_theta": 500000.0,
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
            },
            specials=("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"),
        ),
        Spec("mistral", "MistralForCausalLM", "llama", config={"sliding_window": 256}),
        Spec(
            "qwen2",
            "Qwen2ForCausalLM",
            "qwen2",
            # llama.cpp's Qwen 2 needs heads x head_dim == hidden_size.
            config={"use_sliding_window": False, "rope_theta": 1000000.0, "hidden_size": 128},
            specials=("<|endoftext|>", "<|im_end|>", "<|im_start|>"),
            add_bos=False,
        ),
        Spec(
            "qwen3",
            "Qwen3ForCausalLM",
            "qwen2",
            config={"use_sliding_window": False, "rope_theta": 1000000.0},
            specials=("<|endoftext|>", "<|im_end|>", "<|im_start|>"),
            add_bos=False,
        ),
        Spec(
            "granite",
            "GraniteForCausalLM",
            "refact",
            config={
                "embedding_multiplier": 12.0,
                "residual_multiplier": 0.5,
                "attention_multiplier": 0.5,
                "logits_scaling": 8.0,
            },
            specials=("<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>"),
            add_bos=False,
        ),
        Spec(
            "gemma2",
            "Gemma2ForCausalLM",
            "gemma",
            config={
                "query_pre_attn_scalar": 32,
                "sliding_window": 8,
                # Low caps, so they bind on the tiny model's small logits.
                "attn_logit_softcapping": 5.0,
                "final_logit_softcapping": 1.0,
                "tie_word_embeddings": True,
            },
        ),
        Spec(
            "gemma3",
            "Gemma3ForCausalLM",
            "gemma",
            config={
                "query_pre_attn_scalar": 32,
                "sliding_window": 8,
                "layer_types": ["sliding_attention", "full_attention"],
                "tie_word_embeddings": True,
            },
        ),
        Spec(
            "phi3",
            "Phi3ForCausalLM",
            "llama",
            # Phi-4-mini style partial rotary; llama.cpp's Phi-3 needs heads x head_dim == hidden.
            config={"hidden_size": 128, "partial_rotary_factor": 0.5},
            lora_targets=("qkv_proj", "o_proj"),
        ),
    )
}


# ---------------------------------------------------------------------------------------------
# tokenizers


def sentencepiece_tokenizer(out_dir: Path, style: str) -> Path:
    """tiny's SentencePiece vocabulary as an HF tokenizer folder; ``style`` "gemma" (spaces
    kept) or "llama" (legacy "▁" prefix), both adding <bos>."""
    from tokenizers import normalizers
    from transformers import GemmaTokenizer, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tokenizer.model").write_bytes(tiny._trained_sentencepiece())
    gemma = GemmaTokenizer.from_pretrained(out_dir, add_bos_token=True)
    backend = gemma.backend_tokenizer
    if style == "llama":
        backend.normalizer = normalizers.Sequence(
            [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
        )
        backend.pre_tokenizer = None
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    tok.save_pretrained(out_dir)
    return out_dir


def bpe_tokenizer(out_dir: Path, pre: str, specials: tuple[str, ...], add_bos: bool) -> Path:
    """A byte-level BPE trained on tiny.CORPUS with the pre-tokenizer ``pre`` ("gpt2",
    "llama3", "qwen2" or "refact"); specials[0] is bos, specials[1] eos."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, processors, trainers
    from tokenizers import pre_tokenizers as pt
    from transformers import PreTrainedTokenizerFast

    byte_level = pt.ByteLevel(add_prefix_space=False, use_regex=pre in ("gpt2", "refact"))
    if pre == "gpt2":
        pre_tokenizer = byte_level
    elif pre == "refact":
        pre_tokenizer = pt.Sequence([pt.Digits(individual_digits=True), byte_level])
    else:
        regex = LLAMA3_REGEX if pre == "llama3" else QWEN2_REGEX
        split = pt.Split(Regex(regex), behavior="isolated", invert=False)
        pre_tokenizer = pt.Sequence([split, byte_level])
    bpe = Tokenizer(models.BPE(ignore_merges=pre == "llama3"))
    bpe.pre_tokenizer = pre_tokenizer
    bpe.decoder = decoders.ByteLevel()
    if pre == "qwen2":
        bpe.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(
        vocab_size=N_VOCAB,
        special_tokens=list(specials),
        initial_alphabet=pt.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([tiny.CORPUS, BPE_EXTRA], trainer=trainer)
    bos, eos = specials[0], specials[1]
    if add_bos:
        bpe.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, 0)]
        )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token=eos, pad_token=eos)
    tok.save_pretrained(out_dir)
    return Path(out_dir)


def make_tokenizer(spec: Spec, out_dir: Path) -> Path:
    if spec.tokenizer in ("gemma", "llama"):
        return sentencepiece_tokenizer(out_dir, spec.tokenizer)
    return bpe_tokenizer(out_dir, spec.tokenizer, spec.specials, spec.add_bos)


# ---------------------------------------------------------------------------------------------
# models


def config_for(spec: Spec, tok: Any, **overrides: Any) -> Any:
    import transformers

    model_class = getattr(transformers, spec.model_class)
    values = {**BASE, **spec.config, **overrides}
    return model_class.config_class(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **values,
    )


def random_model(spec: Spec, config: Any) -> Any:
    import torch
    import transformers

    torch.manual_seed(tiny.SEED)
    model = getattr(transformers, spec.model_class)(config).eval()
    gemma = spec.name.startswith("gemma")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                # Gemma scales by (1 + w): random w so a missing +1 in the export shows.
                param.copy_((0.0 if gemma else 1.0) + torch.randn_like(param) * 0.1)
            elif name.endswith("bias"):
                param.copy_(torch.randn_like(param) * 0.5)
            elif name.endswith(("q_proj.weight", "k_proj.weight", "qkv_proj.weight")):
                param.mul_(10.0)  # sharp attention: positions (and rotary layout) matter
    return model


def make_hf_family(spec: Spec, out_dir: Path, **overrides: Any) -> Path:
    """The family's tiny random model and tokenizer as one HF folder (no tokenizer.gguf)."""
    from transformers import AutoTokenizer

    out_dir = Path(out_dir)
    make_tokenizer(spec, out_dir)
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = random_model(spec, config_for(spec, tok, **overrides))
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def copy_tokenizer(src: Path, dst: Path) -> None:
    """The tokenizer files of one HF folder into another (a merged model's folder)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "tokenizer.gguf"):
        if (Path(src) / name).is_file():
            shutil.copy(Path(src) / name, Path(dst) / name)


def read_config(hf_dir: Path) -> dict[str, Any]:
    return json.loads((Path(hf_dir) / "config.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# transformers vs llama.cpp


def hf_logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def llama_cpp_logits(path: Path, ids: list[int]) -> Any:
    import numpy as np

    from labmake.core.llama import open_llama

    llm = open_llama(path, n_ctx=256, logits_all=True, n_threads=2)
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)])
    finally:
        llm.close()


def llama_cpp_tokens(path: Path, text: str) -> list[int]:
    from labmake.core.llama import open_vocab

    vocab = open_vocab(path)
    try:  # add_bos=True: llama.cpp adds bos/eos where the file's add_bos/add_eos say so
        return vocab.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    finally:
        vocab.close()


def corr(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ---------------------------------------------------------------------------------------------
# training


def tune_and_merge(spec: Spec, base_dir: Path, out_dir: Path, steps: int = 3) -> Path:
    """A few LoRA steps on tiny.CORPUS (peft), merged into the base and saved with the
    base's tokenizer files, as labmake's merge leaves a model for export."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    torch.manual_seed(tiny.SEED)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=list(spec.lora_targets))
    model = get_peft_model(model, lora).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = torch.tensor([tok(tiny.CORPUS[:400]).input_ids[:64]])
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    merged = model.merge_and_unload().eval()
    merged.save_pretrained(out_dir, safe_serialization=True)
    copy_tokenizer(base_dir, out_dir)
    return Path(out_dir)
