"""The student on the tiny model: tokenizer GGUF, GGUF -> HF conversion, cache, errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import gguf  # noqa: E402

from labmake.core import artifacts, models, paths  # noqa: E402
from labmake.training import student  # noqa: E402

pytestmark = pytest.mark.model

SENTENCES = [
    "The water cycle moves water between the oceans, the air and the land.",
    "  Two  spaces,\ta tab, digits 2025 and ünïcode (zebra!)\n",
    "<start_of_turn>user\nWhat is rain?<end_of_turn>\n<start_of_turn>model\n",
]
# Longer than the tiny model's sliding window (16), so both attention kinds are exercised.
LONG_TEXT = (
    "The water cycle moves water between the oceans, the air and the land. Sunlight warms "
    "the sea, and water evaporates into the air as invisible vapour."
)


def _hashes(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def _logits(model, ids: list[int]):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def _kv(path: Path, prefix: str) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith(prefix)}


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    assert models.cache_dir().is_relative_to(tmp_path / "cache")
    return models.cache_dir()  # the models cache under $LABMAKE_CACHE


def test_tokenizer_gguf_reads_the_same_in_transformers_and_llama_cpp(tiny_tokenizer_gguf):
    from transformers import AutoTokenizer

    from labmake.core.llama import open_vocab

    tok = AutoTokenizer.from_pretrained(
        tiny_tokenizer_gguf.parent, gguf_file=tiny_tokenizer_gguf.name
    )
    assert len(tok) == 512
    assert (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"]) == [5, 6]
    llm = open_vocab(tiny_tokenizer_gguf)
    try:
        for text in SENTENCES:
            ids = tok(text).input_ids
            assert ids == llm.tokenize(text.encode(), add_bos=True, special=True)
            assert tok.decode(ids, skip_special_tokens=False) == "<bos>" + text
    finally:
        llm.close()
    # The chat template renders Gemma's turn format, system text folded into the first turn.
    rendered = tok.apply_chat_template(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is rain?"},
            {"role": "assistant", "content": "Water from clouds."},
        ],
        tokenize=False,
    )
    assert rendered == (
        "<bos><start_of_turn>user\nBe brief.\n\nWhat is rain?<end_of_turn>\n"
        "<start_of_turn>model\nWater from clouds.<end_of_turn>\n"
    )
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"


def test_tiny_tokenizer_is_deterministic(tiny_tokenizer_gguf, tmp_path):
    import tiny

    again = tiny.make_tokenizer_gguf(tmp_path / "again.gguf")
    assert again.read_bytes() == tiny_tokenizer_gguf.read_bytes()


def test_convert_gguf_to_hf_round_trips_the_tiny_student(
    tiny_student_gguf, tiny_hf_student, tmp_path, cache
):
    out = tmp_path / "base"
    student.convert_gguf_to_hf(tiny_student_gguf, out)

    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer.gguf"} <= names
    marker = artifacts.read_json(out / paths.BASE_MARKER)
    assert marker["source_gguf"] == tiny_student_gguf.name
    assert marker["source_gguf_sha256"] == artifacts.sha256_file(tiny_student_gguf)
    assert marker["model_type"] == "gemma3_text" and marker["parameters"] > 100_000
    assert marker["source_general"]["general.name"] == "labmake tiny test student"

    model, tok = student.load_base(out)
    original, original_tok = student.load_base(tiny_hf_student)
    assert model.config.layer_types == original.config.layer_types
    assert model.config.sliding_window == original.config.sliding_window
    ids = tok(LONG_TEXT).input_ids
    assert ids == original_tok(LONG_TEXT).input_ids and len(ids) > 32
    # An F32 GGUF holds the weights exactly: the logits must agree to float rounding.
    torch.testing.assert_close(_logits(model, ids), _logits(original, ids), atol=1e-4, rtol=1e-4)
    assert tok.chat_template == original_tok.chat_template
    # tokenizer.gguf carries the source's tokenizer metadata unchanged.
    assert _kv(out / "tokenizer.gguf", "tokenizer.") == _kv(tiny_student_gguf, "tokenizer.")
    # The converted model trains: no quantization flag, gradients flow.
    assert getattr(model.config, "quantization_config", None) is None
    model.train()
    loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss
    loss.backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_conversion_is_cached_and_deterministic(tiny_student_gguf, tmp_path, cache, monkeypatch):
    first = tmp_path / "first"
    student.convert_gguf_to_hf(tiny_student_gguf, first)
    sha = artifacts.sha256_file(tiny_student_gguf)
    assert (cache / "hf" / sha / paths.BASE_MARKER).is_file()

    # A second build copies from the cache: converting again would fail here.
    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of using the cache")

    with monkeypatch.context() as m:
        m.setattr(student, "_convert", no_conversion)
        student.convert_gguf_to_hf(tiny_student_gguf, tmp_path / "second")
    assert _hashes(tmp_path / "second") == _hashes(first)

    # Converting afresh gives the same bytes, and replaces an existing folder whole.
    third = tmp_path / "third"
    third.mkdir()
    (third / "stale.txt").write_text("old")
    student.convert_gguf_to_hf(tiny_student_gguf, third, use_cache=False)
    assert _hashes(third) == _hashes(first)
    assert not list(tmp_path.glob(".*.tmp"))


def test_resolve_gguf_errors(tmp_path):
    with pytest.raises(models.StudentError, match="not found"):
        models.resolve_gguf(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("hello")
    with pytest.raises(models.StudentError, match="not a GGUF"):
        models.resolve_gguf(not_gguf)


def test_load_base_needs_a_complete_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(models.StudentError, match="labmake_base.json"):
        student.load_base(tmp_path)


def test_tokenizer_gguf_needs_a_tokenizer(tmp_path):
    bare = tmp_path / "bare.gguf"
    writer = gguf.GGUFWriter(bare, "gemma3")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(models.StudentError, match="no tokenizer"):
        student.write_tokenizer_gguf(bare, tmp_path / "tok.gguf")


@pytest.mark.slow
def test_embedded_gguf_is_assembled_once(cache):
    path = models.embedded_gguf()
    assert path.parent == cache and path.stat().st_size > 200_000_000
    assert models.resolve_gguf(None) == path
    mtime = path.stat().st_mtime_ns
    assert models.embedded_gguf() == path and path.stat().st_mtime_ns == mtime
    assert _kv(path, "general.architecture") == {"general.architecture": "gemma3"}
