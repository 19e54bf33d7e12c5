"""GGUF export, family by family: a tiny random model of each architecture with a real
tokenizer of its kind, its tokenizer written by write_hf_tokenizer_gguf, a few LoRA steps,
merged, exported F16 and Q8_0 and run in llama.cpp against transformers.

Each family is checked for the same tokens (text with punctuation, digits, runs of spaces,
newlines, non-English text and special tokens), the same logits (correlation), and a setting
llama.cpp cannot express refused before anything is written. The models are built so a wrong
transform shows: sharp attention (rotary layout), random norm weights (Gemma's +1), Granite's
multipliers far from 1, biases far from 0, a text longer than Gemma's window of 8.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import gguf  # noqa: E402
import numpy as np  # noqa: E402

import tiny_families as tf  # noqa: E402
from labmake.export import quantize, writer  # noqa: E402
from labmake.export.families import ExportError, family_for  # noqa: E402
from labmake.export.tokenizer import write_hf_tokenizer_gguf  # noqa: E402

pytestmark = pytest.mark.model

# Special tokens of every tiny vocabulary; each family's tokenizer knows some of them.
SPECIALS = "<|begin_of_text|><|im_start|><|start_of_role|><eos><start_of_turn>"
TOKEN_TEXT = (
    "Hello,  world!\n\n\n  Numbers: 3.14, 2025 and 1234567...\tTabs; it's ok, IT'LL go.\n"
    'Call 2468135 (hello) "Quote" [list] x.The end; WE\'VE SEEN IT.\n'
    f"café naïve Straße 東京 Привет 🙂 {SPECIALS}user\n hi  there   "
)
LOGIT_TEXT = (
    "The water cycle moves water between the oceans, the air and the land. Sunlight warms "
    "the sea, and water evaporates into the air as invisible vapour."
)
# No family name in general.name: llama.cpp changes how it splits special tokens for a model
# whose name contains "phi3" (and expects a "</s>" token then).
PROVENANCE = {"general.name": "labmake tiny test model"}
GGUF_ARCH = {
    "llama2": "llama",
    "llama3": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
    "granite": "granite",
    "gemma2": "gemma2",
    "gemma3": "gemma3",
    "phi3": "phi3",
}
# A setting of each family llama.cpp cannot express: (config.json changes, key named).
YARN = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
REFUSALS = {
    "llama2": ({"rope_parameters": YARN}, "yarn"),
    "llama3": ({"attention_bias": True}, "attention_bias"),
    "mistral": ({"rope_parameters": YARN}, "yarn"),
    "qwen2": ({"rope_parameters": YARN}, "yarn"),
    "qwen3": ({"attention_bias": True}, "attention_bias"),
    "granite": ({"mlp_bias": True}, "mlp_bias"),
    "gemma2": ({"attn_logit_softcapping": None}, "attn_logit_softcapping"),
    "gemma3": ({"attn_logit_softcapping": 50.0}, "attn_logit_softcapping"),
    "phi3": ({"rope_parameters": {**YARN, "rope_type": "longrope"}}, "longrope"),
}


@dataclass(frozen=True)
class Exported:
    spec: tf.Spec
    base: Path
    merged: Path
    f16: Path
    q8: Path


def _build(spec: tf.Spec, root: Path) -> Exported:
    base = tf.make_hf_family(spec, root / "base")
    arch = family_for(tf.read_config(base), spec.name).arch
    write_hf_tokenizer_gguf(base, base / "tokenizer.gguf", arch)
    merged = tf.tune_and_merge(spec, base, root / "merged")
    f16, q8 = root / "model.F16.gguf", root / "model.Q8_0.gguf"
    writer.write_gguf(merged, f16, provenance=PROVENANCE)
    quantize.quantize(f16, q8, "Q8_0")
    return Exported(spec, base, merged, f16, q8)


@pytest.fixture(scope="module", params=sorted(tf.SPECS))
def exported(request, tmp_path_factory) -> Exported:
    return _build(tf.SPECS[request.param], tmp_path_factory.mktemp(request.param))


def _hf(merged: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(merged)


def test_llama_cpp_tokenizes_as_transformers(exported):
    _, tok = _hf(exported.merged)
    expected = tok(TOKEN_TEXT).input_ids
    special = {i for i, t in tok.added_tokens_decoder.items() if t.special}
    assert special & set(expected[1:])  # special tokens are in play
    assert tf.llama_cpp_tokens(exported.f16, TOKEN_TEXT) == expected
    assert tf.llama_cpp_tokens(exported.f16, " " + LOGIT_TEXT) == tok(" " + LOGIT_TEXT).input_ids


def test_gguf_logits_match_transformers(exported):
    model, tok = _hf(exported.merged)
    ids = tok(LOGIT_TEXT).input_ids
    assert len(ids) > 4 * 8  # well past Gemma's sliding window
    expected = tf.hf_logits(model, ids)
    base = tf.hf_logits(_hf(exported.base)[0], ids)
    assert np.abs(expected - base).max() > 1e-3  # the LoRA steps changed the model
    f16 = tf.llama_cpp_logits(exported.f16, ids)
    assert tf.corr(f16, expected) >= 0.999
    # Correlation forgives a monotone squash (a missing final soft-cap) and small branches
    # (Granite's scaled residuals): the largest error must stay small too.
    assert np.abs(f16 - expected).max() < 0.02 * np.abs(expected).max()
    assert (f16.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
    assert tf.corr(tf.llama_cpp_logits(exported.q8, ids), expected) >= 0.998
    meta = writer.read_metadata(exported.q8)
    assert meta[gguf.Keys.General.FILE_TYPE] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert meta[gguf.Keys.General.ARCHITECTURE] == GGUF_ARCH[exported.spec.name]


def _with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = tf.read_config(dst)
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return dst


def test_what_llama_cpp_cannot_express_is_refused(exported, tmp_path):
    changes, key = REFUSALS[exported.spec.name]
    hf_dir = _with_config(exported.merged, tmp_path / "hf", **changes)
    out = tmp_path / "x.gguf"
    with pytest.raises(ExportError, match=key):
        writer.write_gguf(hf_dir, out, provenance={})
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


# Families whose llama.cpp graph has no sliding window (Gemma's run it themselves).
@pytest.mark.parametrize("exported", ["mistral", "phi3"], indirect=True)
def test_a_window_shorter_than_the_context_caps_it(exported, tmp_path):
    out = tmp_path / "x.gguf"
    for window, context in ((64, 64), (None, 256), (1024, 256)):
        hf_dir = _with_config(exported.merged, tmp_path / f"w{window}", sliding_window=window)
        writer.write_gguf(hf_dir, out, provenance={})
        arch = writer.read_metadata(out)[gguf.Keys.General.ARCHITECTURE]
        assert writer.read_metadata(out)[gguf.Keys.LLM.CONTEXT_LENGTH.format(arch=arch)] == context


# ---------------------------------------------------------------------------------------------
# tokenizers on their own (vocab-only llama.cpp), including GPT-2's plain ByteLevel


CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}<eos>{% endfor %}"


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2", "refact", "gemma", "llama"])
def test_tokenizer_gguf_splits_as_transformers(kind, tmp_path):
    from transformers import AutoTokenizer

    if kind in ("gemma", "llama"):
        hf_dir = tf.sentencepiece_tokenizer(tmp_path / kind, kind)
    else:
        hf_dir = tf.bpe_tokenizer(tmp_path / kind, kind, ("<|im_start|>", "<eos>"), True)
    (hf_dir / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    out = tmp_path / "tokenizer.gguf"
    write_hf_tokenizer_gguf(hf_dir, out, "llama")
    assert not any(tensor for tensor in gguf.GGUFReader(out).tensors)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    meta = writer.read_metadata(out)
    assert meta[gguf.Keys.Tokenizer.CHAT_TEMPLATE] == CHAT_TEMPLATE
    assert meta[gguf.Keys.Tokenizer.BOS_ID] == tok.bos_token_id
    assert meta[gguf.Keys.Tokenizer.EOS_ID] == tok.eos_token_id
    for text in (TOKEN_TEXT, " " + LOGIT_TEXT, ""):
        assert tf.llama_cpp_tokens(out, text) == tok(text).input_ids, text
    assert not list(tmp_path.glob(".*.tmp"))


def _edit_tokenizer_json(hf_dir: Path, edit) -> Path:
    path = hf_dir / "tokenizer.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    edit(spec)
    path.write_text(json.dumps(spec), encoding="utf-8")
    return hf_dir


def test_tokenizers_llama_cpp_cannot_express_are_refused(tmp_path):
    from transformers import LlamaTokenizer

    # transformers' own LlamaTokenizer puts "▁" before text with Metaspace(prepend "first").
    sp = tf.sentencepiece_tokenizer(tmp_path / "sp", "gemma")
    LlamaTokenizer.from_pretrained(sp, bos_token="<bos>").save_pretrained(tmp_path / "meta")
    bpe = tf.bpe_tokenizer(tmp_path / "bpe", "qwen2", ("<|im_start|>", "<eos>"), False)
    split = ("pre_tokenizer", "pretokenizers", 0, "pattern")
    cases = {
        "meta": ("Metaspace", None),
        "regex": ("pre-tokenizer", lambda s: _at(s, split).update(Regex=r"\p{L}+|\s+")),
        "rstrip": ("rstrip", lambda s: s["added_tokens"][0].update(rstrip=True)),
        "nfkc": ("normalizer", lambda s: s.update(normalizer={"type": "NFKC"})),
    }
    for name, (message, edit) in cases.items():
        hf_dir = tmp_path / name
        if edit is not None:
            _edit_tokenizer_json(shutil.copytree(bpe, hf_dir), edit)
        out = tmp_path / f"{name}.gguf"
        with pytest.raises(ExportError, match=message) as err:
            write_hf_tokenizer_gguf(hf_dir, out, "qwen2")
        assert str(hf_dir / "tokenizer.json") in str(err.value)
        assert not out.exists()


def _at(spec: dict, path: tuple) -> dict:
    for key in path:
        spec = spec[key]
    return spec
