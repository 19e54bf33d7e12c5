"""Export on tiny models: merge, HF -> GGUF (gemma3 and llama families), quantize, metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import gguf  # noqa: E402
import numpy as np  # noqa: E402

from labmake.core import artifacts, paths  # noqa: E402
from labmake.export import metadata, quantize, writer  # noqa: E402
from labmake.export.families import ExportError  # noqa: E402
from labmake.training import merge, student  # noqa: E402
from tiny_families import corr as _corr  # noqa: E402
from tiny_families import hf_logits as _hf_logits  # noqa: E402
from tiny_families import llama_cpp_logits as _llama_cpp_logits  # noqa: E402

pytestmark = pytest.mark.model

PROVENANCE = {
    "general.name": "tiny tuned student",
    "general.basename": "tiny-student",
    "general.version": "v1",
    "general.source.url": "https://example.org/taxonomy",
    "labmake.version": "0.1.0",
    "labmake.base_model": "tiny-student.gguf",
    "labmake.base_model_sha256": "ab" * 32,
    "labmake.taxonomy_hash": "cd" * 32,
    "labmake.dataset.knowledge": 12,
    "labmake.dataset.skills": 7,
    "labmake.deterministic": True,
    "labmake.learning_rate": 2e-4,
}
# Longer than the tiny Gemma's sliding window (16): both attention kinds matter.
TEXT = (
    "The water cycle moves water between the oceans, the air and the land. Sunlight warms "
    "the sea, and water evaporates into the air as invisible vapour."
)


def _fields(path: Path) -> dict[str, object]:
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()}


@pytest.fixture(scope="module")
def hf(tiny_hf_student):
    model, tok = student.load_base(tiny_hf_student)
    ids = tok(TEXT).input_ids
    assert len(ids) > 2 * model.config.sliding_window
    return model, ids


@pytest.fixture(scope="module")
def f16_gguf(tiny_hf_student, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.F16.gguf"
    writer.write_gguf(tiny_hf_student, out, provenance=PROVENANCE)
    return out


# Every type params.yaml may list (the schema's allowed list), not only the default ones.
QUANTS = sorted(q for q in quantize.QUANT_TYPES if q != "F16")


@pytest.fixture(scope="module")
def quantized(f16_gguf) -> dict[str, Path]:
    out = {}
    for qtype in QUANTS:
        out[qtype] = f16_gguf.with_name(f"model.{qtype}.gguf")
        quantize.quantize(f16_gguf, out[qtype], qtype)
    return out


def test_every_quantization_params_yaml_allows_is_known_to_the_exporter():
    import yaml

    from labmake.core import config

    allowed = config.QUANTIZATIONS
    assert sorted(allowed) == sorted(quantize.QUANT_TYPES)
    root = Path(__file__).resolve().parents[2]
    default = yaml.safe_load((root / "params.yaml").read_text())["export"]["quantizations"]
    assert {"Q4_K_M", "Q5_K_M", "Q8_0"} <= set(default) <= set(quantize.QUANT_TYPES)


def _lora(model, seed: int, targets: list[str]):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    # init_lora_weights=False: B is random too, so the adapter changes the model from step 0.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    return get_peft_model(model, config).eval()


def test_merge_equals_base_plus_adapters(tiny_hf_student, hf, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_logits = _hf_logits(hf[0], hf[1])
    ids = hf[1]
    # Phase 1 adapts the base; phase 2 adapts base + phase 1, as training chains them.
    phase1 = _lora(student.load_base(tiny_hf_student)[0], 1, ["q_proj", "v_proj"])
    phase1.save_pretrained(tmp_path / "p1")
    merged1 = PeftModel.from_pretrained(
        student.load_base(tiny_hf_student)[0], tmp_path / "p1"
    ).merge_and_unload()
    phase2 = _lora(merged1, 2, ["o_proj", "down_proj"])
    phase2.save_pretrained(tmp_path / "p2")
    expected = _hf_logits(phase2, ids)

    out = tmp_path / "merged"
    merge.merge(tiny_hf_student, [tmp_path / "p1", tmp_path / "p2"], out, {"labmake.x": "y"})

    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    got = _hf_logits(merged, ids)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert np.abs(got - base_logits).max() > 1e-2  # the adapters did change the model
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (out / "tokenizer.gguf").read_bytes() == (
        tiny_hf_student / "tokenizer.gguf"
    ).read_bytes()
    marker = json.loads((out / paths.MODEL_MARKER).read_text())
    assert marker.pop("labmake.x") == "y"
    assert marker.pop("phase_adapters_sha256") == {
        name: artifacts.sha256_file(tmp_path / name / "adapter_model.safetensors")
        for name in ("p1", "p2")
    }
    # Adapters trained outside labmake: no phase record beyond the name.
    assert marker.pop("phases") == [{"name": "p1"}, {"name": "p2"}]
    assert marker == {}
    tok = AutoTokenizer.from_pretrained(out)
    assert tok(TEXT).input_ids == ids and tok.chat_template
    assert not list(tmp_path.glob(".*.tmp"))


def test_f16_gguf_computes_what_the_hf_model_computes(hf, f16_gguf, tiny_student_gguf):
    model, ids = hf
    expected = _hf_logits(model, ids)
    f16 = _llama_cpp_logits(f16_gguf, ids)
    assert _corr(f16, expected) > 0.999
    assert (f16.argmax(-1) == expected.argmax(-1)).mean() > 0.95
    # F32 keeps the weights exactly: only arithmetic order differs.
    assert np.abs(_llama_cpp_logits(tiny_student_gguf, ids) - expected).max() < 1e-2


@pytest.mark.parametrize("qtype", QUANTS)
def test_quantized_files_load_generate_and_keep_metadata(qtype, quantized, hf):
    path = quantized[qtype]
    assert path.stat().st_size < quantized["Q8_0"].with_name("model.F16.gguf").stat().st_size
    text = quantize.smoke_generate(path, "The water cycle", max_tokens=12)
    assert text.strip()
    # Random weights make near-ties, so compare logits rather than tokens.
    model, ids = hf
    assert _corr(_llama_cpp_logits(path, ids), _hf_logits(model, ids)) > 0.95
    fields = _fields(path)
    assert fields[gguf.Keys.General.FILE_TYPE] == quantize.QUANT_TYPES[qtype]
    for key, value in PROVENANCE.items():
        assert fields[key] == pytest.approx(value), key


def test_metadata_round_trips(f16_gguf, tiny_hf_student):
    fields = _fields(f16_gguf)
    for key, value in PROVENANCE.items():
        assert fields[key] == pytest.approx(value), key
    labmake_keys = [k for k in fields if k.startswith("labmake.")]
    assert labmake_keys == sorted(PROVENANCE_LABMAKE := [k for k in PROVENANCE if "labmake" in k])
    assert len(labmake_keys) == len(PROVENANCE_LABMAKE)
    assert fields[gguf.Keys.General.ARCHITECTURE] == "gemma3"
    assert fields[gguf.Keys.General.FILE_TYPE] == gguf.LlamaFileType.MOSTLY_F16
    assert fields[gguf.Keys.General.QUANTIZATION_VERSION] == gguf.GGML_QUANT_VERSION
    assert fields["gemma3.attention.sliding_window"] == 16
    assert fields["gemma3.attention.sliding_window_pattern"] == [True, False]
    tokenizer = _fields(tiny_hf_student / "tokenizer.gguf")
    for key, value in tokenizer.items():
        if key.startswith("tokenizer."):
            assert fields[key] == value, key
    template = (tiny_hf_student / "chat_template.jinja").read_text()
    assert fields[gguf.Keys.Tokenizer.CHAT_TEMPLATE] == template


def test_gguf_gets_the_trained_chat_template(tiny_hf_student, tmp_path):
    """A source GGUF without a chat template (like the embedded base model) still yields a
    GGUF that llama.cpp can chat with, in the format the model was tuned on."""
    from labmake.core.llama import open_llama

    hf_dir = tmp_path / "hf"
    shutil.copytree(tiny_hf_student, hf_dir)
    tokenizer_writer = gguf.GGUFWriter(hf_dir / "tokenizer.gguf", "gemma3")
    metadata.copy_kv(
        tiny_hf_student / "tokenizer.gguf",
        tokenizer_writer,
        "tokenizer.",
        exclude={gguf.Keys.Tokenizer.CHAT_TEMPLATE},
    )
    tokenizer_writer.write_header_to_file()
    tokenizer_writer.write_kv_data_to_file()
    tokenizer_writer.write_tensors_to_file()
    tokenizer_writer.close()
    assert gguf.Keys.Tokenizer.CHAT_TEMPLATE not in _fields(hf_dir / "tokenizer.gguf")

    out = tmp_path / "m.gguf"
    writer.write_gguf(hf_dir, out, provenance={}, out_type="F32")
    assert _fields(out)[gguf.Keys.Tokenizer.CHAT_TEMPLATE] == student.GEMMA_CHAT_TEMPLATE
    llm = open_llama(out, n_ctx=128, n_threads=2, seed=0)
    try:
        reply = llm.create_chat_completion(
            [{"role": "user", "content": "What is rain?"}], max_tokens=4, temperature=0.0
        )
    finally:
        llm.close()
    assert reply["choices"][0]["message"]["role"] == "assistant"


def test_fast_metadata_reader_agrees_with_gguf_reader(f16_gguf, quantized, tiny_student_gguf):
    for path in (f16_gguf, *quantized.values(), tiny_student_gguf):
        expected = {
            k: f.contents()
            for k, f in gguf.GGUFReader(path).fields.items()
            if not k.startswith("GGUF.")
        }
        assert metadata.metadata(path) == expected, path
    with pytest.raises(metadata.GGUFMetadataError, match="not a GGUF"):
        metadata.read_kv(Path(__file__))


def test_source_license_and_name_are_carried(tiny_hf_student, tmp_path):
    hf_dir = tmp_path / "hf"
    shutil.copytree(tiny_hf_student, hf_dir)
    marker = json.loads((hf_dir / paths.BASE_MARKER).read_text())
    marker["source_general"] = {"general.license": "gemma", "general.name": "Gemma 3 270m"}
    (hf_dir / paths.BASE_MARKER).write_text(json.dumps(marker))
    out = tmp_path / "m.gguf"
    writer.write_gguf(hf_dir, out, provenance={"general.name": "tuned"}, out_type="F32")
    fields = _fields(out)
    assert fields["general.license"] == "gemma"
    assert fields["general.base_model.count"] == 1
    assert fields["general.base_model.0.name"] == "Gemma 3 270m"
    assert fields["general.name"] == "tuned"


def test_export_is_deterministic(tiny_hf_student, f16_gguf, quantized, tmp_path):
    again = tmp_path / "again.gguf"
    writer.write_gguf(tiny_hf_student, again, provenance=dict(reversed(PROVENANCE.items())))
    assert again.read_bytes() == f16_gguf.read_bytes()
    q = tmp_path / "again.Q4_K_M.gguf"
    quantize.quantize(again, q, "Q4_K_M")
    assert q.read_bytes() == quantized["Q4_K_M"].read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))


def _with_config(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_unsupported_architecture_names_the_supported_ones(tiny_hf_student, tmp_path):
    hf_dir = _with_config(tiny_hf_student, tmp_path / "mamba", architectures=["MambaForCausalLM"])
    with pytest.raises(ExportError) as err:
        writer.write_gguf(hf_dir, tmp_path / "x.gguf", provenance={})
    message = str(err.value)
    assert "MambaForCausalLM" in message and str(hf_dir / "config.json") in message
    for name in ("Gemma3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM"):
        assert name in message
    assert not (tmp_path / "x.gguf").exists()


def test_features_llama_cpp_cannot_express_are_refused(tiny_hf_student, tmp_path):
    hf_dir = _with_config(tiny_hf_student, tmp_path / "g2", attn_logit_softcapping=50.0)
    with pytest.raises(ExportError, match="attn_logit_softcapping"):
        writer.write_gguf(hf_dir, tmp_path / "x.gguf", provenance={})


def test_bad_arguments_are_explained(f16_gguf, tiny_hf_student, tmp_path):
    with pytest.raises(ExportError, match="Q4_K_M"):
        quantize.quantize(f16_gguf, tmp_path / "x.gguf", "Q3_XYZ")
    with pytest.raises(ExportError, match="no such GGUF"):
        quantize.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "Q8_0")
    with pytest.raises(ExportError, match="must start with"):
        writer.write_gguf(tiny_hf_student, tmp_path / "x.gguf", provenance={"seed": 1})
    with pytest.raises(ExportError, match="set by the GGUF writer"):
        writer.write_gguf(tiny_hf_student, tmp_path / "x.gguf", provenance={"general.file_type": 1})
    with pytest.raises(ExportError, match="out_type"):
        writer.write_gguf(tiny_hf_student, tmp_path / "x.gguf", provenance={}, out_type="Q4")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("architecture", ["LlamaForCausalLM", "MistralForCausalLM"])
def test_llama_family_exports_and_runs(architecture, tmp_path):
    from transformers import AutoModelForCausalLM

    import tiny

    hf_dir = tiny.make_hf_llama(tmp_path / "hf", architecture)
    out = tmp_path / "llama.F16.gguf"
    writer.write_gguf(hf_dir, out, provenance={"labmake.version": "test"})
    assert _fields(out)[gguf.Keys.General.ARCHITECTURE] == "llama"
    model = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    from labmake.core.llama import open_vocab

    vocab = open_vocab(out)
    try:
        ids = vocab.tokenize(TEXT.encode(), add_bos=True)
    finally:
        vocab.close()
    # q/k rows are reordered for llama.cpp's rotary layout; a mistake shows up here (the tiny
    # model's attention is sharp enough that the correlation falls to ~0.8 without it).
    assert _corr(_llama_cpp_logits(out, ids), _hf_logits(model, ids)) > 0.999
    assert quantize.smoke_generate(out, "The water", max_tokens=8).strip()


def test_mistral_sliding_window_shorter_than_the_context_caps_it(tmp_path):
    import tiny

    hf_dir = tiny.make_hf_llama(tmp_path / "hf", "MistralForCausalLM")
    config = json.loads((hf_dir / "config.json").read_text())
    config["sliding_window"] = 64
    (hf_dir / "config.json").write_text(json.dumps(config))
    writer.write_gguf(hf_dir, tmp_path / "x.gguf", provenance={})
    context = gguf.Keys.LLM.CONTEXT_LENGTH.format(arch="llama")
    assert writer.read_metadata(tmp_path / "x.gguf")[context] == 64
