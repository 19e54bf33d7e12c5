"""A Hugging Face student (student.hf) on the tiny model: the base folder it becomes, a phase
tuned on it, the merged model exported to a GGUF llama.cpp loads; student.chat_template from
the training text to the GGUF's tokenizer.chat_template."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import gguf  # noqa: E402

from labmake.core import artifacts, paths  # noqa: E402
from labmake.core.config import LoraConfig, PhaseConfig  # noqa: E402
from labmake.training import student, student_hf  # noqa: E402

pytestmark = pytest.mark.model

# A ChatML-like turn format the tiny student was never shipped with.
OVERRIDE = (
    "{% for m in messages %}[{{ m['role'] | upper }}] {{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}[ASSISTANT] {% endif %}"
)


def plain_hf_folder(base: Path, out: Path) -> Path:
    """What a user has: the model as save_pretrained writes it, no labmake files."""
    out.mkdir(parents=True)
    for path in base.iterdir():
        if path.name not in (paths.TOKENIZER_GGUF, paths.BASE_MARKER):
            shutil.copyfile(path, out / path.name)
    return out


def _fields(path: Path) -> dict[str, object]:
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()}


@pytest.fixture(scope="module")
def hf_student(tiny_hf_student: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return plain_hf_folder(tiny_hf_student, tmp_path_factory.mktemp("hf") / "tiny-hf")


def test_the_base_folder_is_the_folder_copied_with_its_tokenizer_and_hash(
    hf_student: Path, tiny_hf_student: Path, tmp_path: Path
):
    base = tmp_path / "base"
    student_hf.build_base(hf_student, base)
    marker = artifacts.read_json(base / paths.BASE_MARKER)
    assert marker["source_hf"] == "tiny-hf"
    assert marker["source_hf_sha256"] == student_hf.folder_sha256(hf_student)
    assert (
        marker["parameters"]
        == artifacts.read_json(tiny_hf_student / paths.BASE_MARKER)["parameters"]
    )
    # The weights are not converted: the same bytes.
    assert artifacts.sha256_file(base / "model.safetensors") == artifacts.sha256_file(
        hf_student / "model.safetensors"
    )
    # The tokenizer GGUF holds the vocabulary the tiny student's own tokenizer GGUF holds.
    written, original = (
        _fields(base / paths.TOKENIZER_GGUF),
        _fields(tiny_hf_student / paths.TOKENIZER_GGUF),
    )
    assert written[gguf.Keys.Tokenizer.LIST] == original[gguf.Keys.Tokenizer.LIST]
    assert written[gguf.Keys.General.ARCHITECTURE] == "gemma3"
    model, tokenizer = student.load_base(base)
    assert tokenizer.chat_template == (hf_student / "chat_template.jinja").read_text()
    student_hf.check_tokenizer(hf_student)  # what labmake validate runs: no error


def _phase() -> PhaseConfig:
    return PhaseConfig(
        name="knowledge",
        dataset="knowledge",
        max_steps=3,
        learning_rate=2e-2,
        warmup_steps=1,
        batch_size=2,
        lora=LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj")),
    )


def tune_merge_export(base: Path, work: Path) -> Path:
    """Three LoRA steps on the base folder, merged (work/merged) and exported to an F16 GGUF
    that llama.cpp loads and chats with; the GGUF's path."""
    from labmake.core.llama import open_llama
    from labmake.core.models import base_source
    from labmake.export.writer import write_gguf
    from labmake.training.merge import merge
    from labmake.training.phase import run_phase

    talk = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    dataset = work / "knowledge.jsonl"
    records = [{"messages": [{"role": "user", "content": f"Q{i}?"}, talk[1]]} for i in range(4)]
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    phase = _phase()
    kwargs = {"max_seq_len": 48, "seed": 3, "parent_dirs": [], "replay": []}
    run_phase(phase, base_dir=base, dataset=dataset, out_dir=work / "knowledge", **kwargs)
    merge(base, [work / "knowledge"], work / "merged", provenance={})
    out = work / "model.F16.gguf"
    sha = base_source(work / "merged")[1]
    write_gguf(work / "merged", out, provenance={"labmake.base_model_sha256": sha})
    assert _fields(out)["labmake.base_model_sha256"] == sha
    llm = open_llama(out, n_ctx=128, n_threads=2, seed=0)
    try:
        reply = llm.create_chat_completion([talk[0]], max_tokens=4, temperature=0.0)
    finally:
        llm.close()
    assert reply["choices"][0]["message"]["role"] == "assistant"
    return out


def test_tuned_hf_student_with_its_own_template_exports_a_gguf_llama_cpp_runs(
    hf_student: Path, tmp_path: Path
):
    from labmake.core.models import base_source
    from labmake.training.data import assistant_spans

    template = tmp_path / "chat.jinja"
    template.write_text(OVERRIDE, encoding="utf-8")
    base = tmp_path / "base"
    student_hf.build_base(hf_student, base, template)
    marker = artifacts.read_json(base / paths.BASE_MARKER)
    assert marker["chat_template_sha256"] == artifacts.sha256_file(template)
    assert marker["source_hf_sha256"] == student_hf.folder_sha256(hf_student)

    # Training renders its conversations with the override.
    _, tokenizer = student.load_base(base)
    text, spans = assistant_spans(
        tokenizer, [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Yes."}]
    )
    assert text == "[USER] Hi?<end_of_turn>\n[ASSISTANT] Yes.<end_of_turn>\n"
    assert text[spans[0][0] : spans[0][1]] == "Yes.<end_of_turn>\n"

    out = tune_merge_export(base, tmp_path)
    name, sha = base_source(tmp_path / "merged")
    assert (name, sha) == ("tiny-hf", marker["source_hf_sha256"])
    assert _fields(out)[gguf.Keys.Tokenizer.CHAT_TEMPLATE] == OVERRIDE


def test_a_gguf_students_template_can_be_overridden_too(tiny_student_gguf: Path, tmp_path):
    template = tmp_path / "chat.jinja"
    template.write_text(OVERRIDE, encoding="utf-8")
    base = tmp_path / "base"
    student.convert_gguf_to_hf(tiny_student_gguf, base, use_cache=False, chat_template=template)
    assert (base / "chat_template.jinja").read_text() == OVERRIDE
    marker = artifacts.read_json(base / paths.BASE_MARKER)
    assert marker["chat_template"] == "chat.jinja"
    assert marker["source_gguf"] == tiny_student_gguf.name


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_sharded_bf16_qwen2_folder_tunes_and_exports(tmp_path: Path):
    """Another family (byte-level BPE tokenizer), weights in bf16 shards with their index:
    copied as they are, tuned in fp32 on the CPU, exported to a GGUF llama.cpp runs."""
    from transformers import AutoModelForCausalLM

    import tiny_families

    spec = tiny_families.SPECS["qwen2"]
    folder = tiny_families.make_hf_family(spec, tmp_path / "qwen-src")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    sharded = tmp_path / "tiny-qwen"
    model.save_pretrained(sharded, max_shard_size="100KB")
    tiny_families.copy_tokenizer(folder, sharded)
    (sharded / "tokenizer.gguf").unlink(missing_ok=True)
    assert (sharded / student_hf.WEIGHTS_INDEX).is_file()
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML, encoding="utf-8")
    student_hf.check_tokenizer(sharded)
    base = tmp_path / "base"
    student_hf.build_base(sharded, base, template)
    shards = student_hf.weight_files(sharded)
    assert len(shards) > 1
    for shard in shards:  # not converted
        assert artifacts.sha256_file(base / shard.name) == artifacts.sha256_file(shard)

    out = tune_merge_export(base, tmp_path)
    assert _fields(out)[gguf.Keys.Tokenizer.CHAT_TEMPLATE] == CHATML


def test_training_dtype_is_fp32_on_a_cpu_and_bf16_for_lora_on_a_bf16_gpu(monkeypatch):
    from labmake.training import loop

    assert loop.weights_dtype("bfloat16", "lora") == torch.float32  # this machine: a CPU
    monkeypatch.setattr(loop, "mixed_precision", lambda device: "bf16")
    assert loop.weights_dtype("bfloat16", "lora") == torch.bfloat16
    assert loop.weights_dtype("bfloat16", "full") == torch.float32  # fp32 master weights
    assert loop.weights_dtype("float32", "lora") == torch.float32


# Text where a Metaspace prefix rule and llama.cpp's space prefix split differently.
PREFIX_TEXTS = (
    " hi",
    "a<eos>b",
    "<start_of_turn>user\nWhat is rain?<end_of_turn>\n<start_of_turn>model\n",
    "x  y\n\nz",
)


def test_a_llama2_style_folder_is_trained_with_llama_cpps_space_prefix(tmp_path: Path):
    """transformers 5 loads a Llama 2 / Mistral / Phi-3 folder's tokenizer with a Metaspace rule
    that llama.cpp cannot express: the base folder's tokenizer follows llama.cpp's instead, so
    the ids training sees are the ids llama.cpp reads."""
    from transformers import AutoTokenizer

    import tiny_families

    folder = tiny_families.make_hf_family(tiny_families.SPECS["llama2"], tmp_path / "llama2")
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["tokenizer_class"] = "LlamaTokenizer"  # what a real Llama 2 folder names
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    source = AutoTokenizer.from_pretrained(folder)
    assert json.loads(source.backend_tokenizer.to_str())["pre_tokenizer"]["type"] == "Metaspace"
    template = tmp_path / "chat.jinja"
    template.write_text(CHATML, encoding="utf-8")

    student_hf.check_tokenizer(folder)  # accepted, as the base folder will hold it
    base = tmp_path / "base"
    student_hf.build_base(folder, base, template)
    trained = AutoTokenizer.from_pretrained(base)
    ids = [trained(text)["input_ids"] for text in PREFIX_TEXTS]
    assert ids == [
        tiny_families.llama_cpp_tokens(base / paths.TOKENIZER_GGUF, t) for t in PREFIX_TEXTS
    ]
    # the rule differs where the issue lies and nowhere else: same vocabulary, bos, template
    assert ids != [source(text)["input_ids"] for text in PREFIX_TEXTS]
    assert trained("Hello world")["input_ids"] == source("Hello world")["input_ids"]
    assert trained.get_vocab() == source.get_vocab()
    assert trained.chat_template == CHATML
