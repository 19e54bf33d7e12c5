"""Tiny, deterministic test models: a real SentencePiece tokenizer and a 2-layer Gemma 3.

Everything here is built on the fly from fixed inputs (the corpus below, fixed seeds, one
thread), so two runs give the same tokenizer and the same weights. The shapes follow the real
Gemma 3 270M student where it matters to the code under test:

- the vocabulary has Gemma's special-token layout (<pad>=0, <eos>=1, <bos>=2, <unk>=3, then
  <mask>, <start_of_turn>, <end_of_turn> as control tokens), byte fallback and no dummy
  space prefix;
- the tokenizer lives in a tokenizer-only GGUF, the form labmake carries tokenizers in;
- layer 0 is a sliding-window layer and layer 1 a full-attention layer (the real model
  alternates 5 sliding : 1 full), with a window short enough for tests to exceed it.

Dimensions: every weight row is 64 or 128 wide, a multiple of 32, so Q8_0/Q4_0/Q5_0 quantize
every tensor. K-quants (Q4_K_M, ...) need rows that are multiples of 256; llama.cpp falls back
to a legacy 32-block type (Q5_0, Q8_0) for narrower tensors, so K-quant files of this model
load and run but hold no K-quant blocks: K-quant numerics were checked on the real student
(by hand; numbers in labmake.export.writer's docstring). SentencePiece refuses a vocabulary much
below ~300 with byte fallback (256 byte pieces), hence 512.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

VOCAB_SIZE = 512
SPECIAL_TOKENS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
# Control tokens after the four above, as in Gemma (which has <mask> at 4 and the turn markers
# further on); without <mask> in the vocabulary transformers appends one (id 512).
CONTROL_TOKENS = ("<mask>", "<start_of_turn>", "<end_of_turn>")
SEED = 1234

# Hyperparameters of the tiny student; hidden 64, head_dim 32 (see the module docstring).
TINY_GEMMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "query_pre_attn_scalar": 32,
    "max_position_embeddings": 512,
    "sliding_window": 16,
    "layer_types": ["sliding_attention", "full_attention"],
    "rms_norm_eps": 1e-6,
}

# Fixed training text for the tokenizer. Changing it changes every tiny model; keep it fixed.
CORPUS = """\
The water cycle moves water between the oceans, the air and the land.
Sunlight warms the sea, and water evaporates into the air as invisible vapour.
As warm air rises it cools, and the vapour condenses into tiny droplets that form clouds.
When the droplets grow heavy they fall as rain, snow, sleet or hail.
Rain that reaches the ground soaks into the soil or runs off into streams and rivers.
Rivers carry the water back to the sea, and the cycle starts again.
Plants also return water to the air through their leaves; this is called transpiration.
Groundwater can stay underground for thousands of years before it reaches a spring.
Glaciers and ice caps store most of the fresh water on Earth.
What is evaporation? Evaporation is the change of liquid water into vapour.
What is condensation? Condensation is the change of vapour back into liquid water.
Why do clouds form? Clouds form when rising air cools and its vapour condenses.
A recipe is a list of steps. First, wash the rice. Then boil two cups of water.
Add the rice, lower the heat and cover the pot for fifteen minutes.
Bread needs flour, water, salt and yeast; the dough rises in a warm place.
To make tea, pour hot water over the leaves and wait three or four minutes.
Paris is the capital of France, and Rome is the capital of Italy.
The Nile is one of the longest rivers in the world; it flows north into the Mediterranean.
Mount Everest is the highest mountain above sea level, at about 8849 metres.
The Pacific Ocean is larger than all of the land on Earth put together.
A function takes inputs and returns an output. A loop repeats a block of code.
Python reads a file line by line when you iterate over the file object.
Tests check that the code does what it should; a failing test points to a bug.
Write small functions, give them clear names, and keep the side effects at the edges.
Please summarize the text in one sentence. The text explains how rain forms.
Rewrite the sentence in a formal tone: the meeting got moved to Friday.
The meeting has been rescheduled to Friday.
Translate to plain English: the precipitation probability is elevated.
It will probably rain.
List three colours: red, green and blue. List three animals: a cat, a dog and a horse.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 256 1024 2025 3.14 42.
Question: How many legs does a spider have? Answer: A spider has eight legs.
Question: What gas do plants take in? Answer: Plants take in carbon dioxide.
Question: Where does rain come from? Answer: Rain falls from clouds.
Question: Who wrote the letter? Answer: The letter was written by her brother.
user: Can you help me plan a short trip? model: Of course. Where would you like to go?
user: Explain photosynthesis simply. model: Plants use light to turn water and air into sugar.
user: Give me a word that rhymes with light. model: Night, bright and kite all rhyme with light.
The quick brown fox jumps over the lazy dog while the children laugh in the garden.
She sells sea shells by the sea shore, and the shells she sells are surely sea shells.
Every morning the baker opens the shop at six and the first customers arrive soon after.
In winter the lake freezes, and in spring the ice melts and the water level rises.
The library is quiet; students read books, write notes and search for articles.
Good writing is clear, short and concrete. Each paragraph makes one point.
A map shows roads, towns, rivers and mountains; a compass shows north, south, east and west.
Scientists measure temperature in degrees Celsius or Kelvin, and pressure in pascals.
Humidity is the amount of water vapour in the air; warm air can hold more vapour than cold air.
Fog is a cloud that touches the ground. Dew forms on grass on clear, cool nights.
The train leaves at nine, stops at every station, and reaches the city before noon.
Thank you for your help! You're welcome. Have a nice day. See you tomorrow.
"""


def _trained_sentencepiece() -> bytes:
    """Serialized SentencePiece model trained on CORPUS (BPE, byte fallback, Gemma layout)."""
    import io

    import sentencepiece as spm

    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines()),
        model_writer=model,
        minloglevel=2,  # quiet: only warnings and errors
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        # Gemma keeps text as is: no dummy "▁" prefix, no whitespace folding, no NFKC.
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        pad_id=SPECIAL_TOKENS["<pad>"],
        eos_id=SPECIAL_TOKENS["<eos>"],
        bos_id=SPECIAL_TOKENS["<bos>"],
        unk_id=SPECIAL_TOKENS["<unk>"],
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        control_symbols=list(CONTROL_TOKENS),
        num_threads=1,
    )
    return model.getvalue()


def make_tokenizer_gguf(out: Path, *, arch: str = "gemma3") -> Path:
    """Write a tokenizer-only GGUF (no tensors) for the tiny SentencePiece vocabulary."""
    import gguf
    from sentencepiece import sentencepiece_model_pb2

    from labmake.training.student import GEMMA_CHAT_TEMPLATE

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(_trained_sentencepiece())
    tokens = [p.piece for p in proto.pieces]
    scores = [p.score for p in proto.pieces]
    # SentencePiece's piece types use the same numbers as gguf.TokenType (NORMAL=1 ... BYTE=6).
    types = [gguf.TokenType(p.type) for p in proto.pieces]
    assert len(tokens) == VOCAB_SIZE
    assert all(tokens[i] == t for t, i in SPECIAL_TOKENS.items())

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, arch)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(SPECIAL_TOKENS["<bos>"])
    writer.add_eos_token_id(SPECIAL_TOKENS["<eos>"])
    writer.add_unk_token_id(SPECIAL_TOKENS["<unk>"])
    writer.add_pad_token_id(SPECIAL_TOKENS["<pad>"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)
    writer.add_chat_template(GEMMA_CHAT_TEMPLATE)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)
    return out


def _random_gemma(vocab_size: int):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=vocab_size,
        pad_token_id=SPECIAL_TOKENS["<pad>"],
        eos_token_id=SPECIAL_TOKENS["<eos>"],
        bos_token_id=SPECIAL_TOKENS["<bos>"],
        tie_word_embeddings=True,
        **TINY_GEMMA,
    )
    torch.manual_seed(SEED)
    model = Gemma3ForCausalLM(config).eval()
    # Random init leaves the RMSNorm weights at 0 (Gemma scales by 1 + w): give them values so
    # a wrong +1 shift in the exporter changes the logits and the tests notice.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(torch.randn_like(param) * 0.1)
    return model


def make_hf_student(out_dir: Path) -> Path:
    """The tiny student in labmake's base-model layout (what ``convert_gguf_to_hf`` writes)."""
    from transformers import AutoTokenizer

    from labmake.training.student import save_base

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as work:
        tok_gguf = make_tokenizer_gguf(Path(work) / "tokenizer.gguf")
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=tok_gguf.name)
        model = _random_gemma(len(tokenizer))
        save_base(
            model,
            tokenizer,
            tok_gguf,
            out_dir,
            marker={"source_gguf": None, "source_gguf_sha256": None, "note": "tiny random model"},
        )
    return out_dir


def make_student_gguf(out: Path, hf_dir: Path | None = None) -> Path:
    """The tiny student as one full F32 GGUF with its tokenizer (a ``student.gguf`` input).

    ``hf_dir``: an existing :func:`make_hf_student` folder to export; built beside ``out`` if
    not given.
    """
    from labmake.export.writer import write_gguf

    out = Path(out)
    if hf_dir is None:
        hf_dir = make_hf_student(out.with_name(out.stem + ".hf"))
    write_gguf(
        hf_dir,
        out,
        provenance={"general.name": "labmake tiny test student"},
        out_type="F32",
    )
    return out


def make_hf_llama(out_dir: Path, architecture: str = "LlamaForCausalLM") -> Path:
    """A tiny random Llama-family model (``LlamaForCausalLM`` or ``MistralForCausalLM``) with
    the same SentencePiece vocabulary, as safetensors + config.json + tokenizer.gguf: what the
    GGUF exporter reads. Four query heads and two KV heads, so the exporter's q/k reordering is
    exercised for grouped-query attention."""
    import torch
    import transformers

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    make_tokenizer_gguf(out_dir / "tokenizer.gguf", arch="llama")
    model_class = getattr(transformers, architecture)
    config_class = model_class.config_class
    config = config_class(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=None,
        pad_token_id=SPECIAL_TOKENS["<pad>"],
        eos_token_id=SPECIAL_TOKENS["<eos>"],
        bos_token_id=SPECIAL_TOKENS["<bos>"],
    )
    torch.manual_seed(SEED)
    model = model_class(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + torch.randn_like(param) * 0.1)
            elif name.endswith(("q_proj.weight", "k_proj.weight")):
                # Sharpen attention: with the default init it is nearly uniform, so positions
                # (and a wrong rotary layout in the export) would hardly change the logits.
                param.mul_(10.0)
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
