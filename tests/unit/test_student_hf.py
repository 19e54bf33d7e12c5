"""student.hf and student.chat_template: the config, the folder checks and their messages, the
content hash, and what `labmake validate` / `labmake build -n` say before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tiny
from labmake.cli.build_checks import student_checked
from labmake.cli.validate import run_validate, student_problem
from labmake.core import paths
from labmake.core.config import ConfigError, StudentConfig, section, validate
from labmake.core.models import StudentError, base_source, student_gguf
from labmake.export.families import ExportError
from labmake.training import chat_template, student_hf

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONFIG = {
    **tiny.TINY_GEMMA,  # the tiny student's shape (tests/tiny.py), as config.json holds it
    "architectures": ["Gemma3ForCausalLM"],
    "model_type": "gemma3_text",
    "dtype": "bfloat16",
    "rope_parameters": {
        "full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
        "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"},
    },
    "tie_word_embeddings": True,
    "vocab_size": tiny.VOCAB_SIZE,
}


def _safetensors(path: Path, tensors: dict[str, list[int]]) -> None:
    """A safetensors file of zero-filled f32 tensors of the given shapes (no torch)."""
    header, offset = {}, 0
    for name, shape in tensors.items():
        size = 4
        for dim in shape:
            size *= dim
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(offset))


def hf_folder(root: Path, **changes: object) -> Path:
    """A Hugging Face model folder as `hf download` leaves it (placeholder tokenizer)."""
    root.mkdir(parents=True, exist_ok=True)
    config = {**CONFIG, **changes}
    (root / "config.json").write_text(json.dumps(config), encoding="utf-8")
    _safetensors(root / "model.safetensors", {"model.embed_tokens.weight": [512, 64]})
    (root / "tokenizer.json").write_text("{}", encoding="utf-8")
    (root / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<bos>", "eos_token": "<eos>", "chat_template": CHATML}),
        encoding="utf-8",
    )
    return root


def _message(folder: Path, template: Path | None = None) -> str:
    with pytest.raises(StudentError) as caught:
        student_hf.check_folder(folder, template)
    return str(caught.value)


# ------------------------------------------------------------------------------- config


def test_config_takes_one_student_source():
    assert section(StudentConfig, {}, "student") == StudentConfig(None, None, None)
    hf = section(StudentConfig, {"hf": "models/m", "chat_template": "chat.jinja"}, "student")
    assert (hf.hf, hf.chat_template, hf.gguf) == ("models/m", "chat.jinja", None)
    with pytest.raises(ConfigError, match=r"student.gguf \(a.gguf\) and student.hf \(m\) are both"):
        section(StudentConfig, {"gguf": "a.gguf", "hf": "m"}, "student")
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text("utf-8"))
    with pytest.raises(ConfigError, match="student.hf"):
        validate({**raw, "student": {"hf": ""}})
    with pytest.raises(ConfigError, match="both set"):
        validate({**raw, "student": {"hf": "m", "gguf": "s.gguf"}})
    assert validate({**raw, "student": {"hf": "m"}}).student.hf == "m"


def test_the_gguf_that_plays_the_student_is_the_hf_students_export():
    assert student_gguf(StudentConfig(hf="m")) == paths.STUDENT_GGUF
    assert student_gguf(StudentConfig(gguf="s.gguf")) == "s.gguf"
    assert student_gguf(StudentConfig()) is None


def test_params_yaml_ships_the_new_keys_commented_out():
    text = (Path(__file__).parents[2] / "params.yaml").read_text(encoding="utf-8")
    assert "# hf: " in text and "# chat_template: " in text
    import yaml

    assert set(yaml.safe_load(text)["student"]) == {"gguf"}  # existing builds re-run nothing


# ------------------------------------------------------------------------------- checks


def test_a_complete_folder_passes(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    assert student_hf.check_folder(folder)["model_type"] == "gemma3_text"
    assert student_hf.student_inputs(StudentConfig(hf=str(folder))) == [
        str(folder / n)
        for n in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    ]


def test_no_such_folder(tmp_path: Path):
    msg = _message(tmp_path / "missing")
    assert f"student.hf: {tmp_path / 'missing'}: no such folder" in msg
    assert "local Hugging Face model folder" in msg


def test_no_config_json(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "config.json").unlink()
    msg = _message(folder)
    assert f"{folder}: no config.json" in msg and "holds config.json" in msg


def test_no_tokenizer(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    msg = _message(folder)
    assert f"{folder}: no tokenizer (neither tokenizer.json nor tokenizer.model)" in msg
    assert "save_pretrained(folder)" in msg


def test_only_pickle_weights(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    msg = _message(folder)
    assert f"{folder}: only PyTorch .bin (pickle) weights, no safetensors" in msg
    assert "save_pretrained(new_folder)" in msg


def test_no_weights_or_shards_without_index(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    msg = _message(folder)
    assert "no model.safetensors and no model.safetensors.index.json" in msg
    assert "model-00001-of-00002.safetensors without" in msg


def test_sharded_weights_with_a_missing_shard(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "model.safetensors").rename(folder / "a.safetensors")
    index = {"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index), encoding="utf-8")
    assert "names shard(s) that are not there (b.safetensors)" in _message(folder)
    _safetensors(folder / "b.safetensors", {"y": [2]})
    assert [p.name for p in student_hf.weight_files(folder)] == ["a.safetensors", "b.safetensors"]
    student_hf.check_folder(folder)


def test_remote_code_architecture(tmp_path: Path):
    folder = hf_folder(tmp_path / "m", auto_map={"AutoModelForCausalLM": "modeling_x.XModel"})
    msg = _message(folder)
    assert f"{folder}: config.json has auto_map" in msg and "trust_remote_code" in msg


def test_quantized_weights(tmp_path: Path):
    folder = hf_folder(tmp_path / "m", quantization_config={"quant_method": "gptq"})
    assert "the weights are quantized" in _message(folder)


def test_architecture_the_exporter_does_not_support(tmp_path: Path):
    folder = hf_folder(tmp_path / "m", architectures=["BertForMaskedLM"], model_type="bert")
    msg = _message(folder)
    assert "BertForMaskedLM" in msg and str(folder / "config.json") in msg
    assert "supported:" in msg and "could not be exported to GGUF" in msg


def test_no_chat_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = hf_folder(tmp_path / "m")
    (folder / "tokenizer_config.json").write_text("{}", encoding="utf-8")
    # A Gemma 3 without one gets Gemma's turn format; another family has no default.
    assert "<start_of_turn>" in str(student_hf.student_template(folder, CONFIG))
    monkeypatch.setattr(student_hf, "DEFAULT_TEMPLATES", {})
    msg = _message(folder)
    assert f"{folder}: the model has no chat template" in msg and "student.chat_template" in msg


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% for m in messages %}{{ m.content }", "does not render a user/assistant"),
        ("{{ raise_exception('no system role') }}", "no system role"),
        ("{% for m in messages %}{{ m.role }}{% endfor %}", "leaves the conversation's text out"),
        (
            "{% if add_generation_prompt %}A:{% endif %}{% for m in messages %}{{ m.content }}"
            "{% endfor %}",
            "not prefix-stable",
        ),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "does not render"),  # sandboxed
    ],
)
def test_chat_template_file_checks(tmp_path: Path, template: str, expected: str):
    folder = hf_folder(tmp_path / "m")
    path = tmp_path / "chat.jinja"
    path.write_text(template, encoding="utf-8")
    msg = _message(folder, path)
    assert str(path) in msg and expected in msg


def test_chat_template_file_missing(tmp_path: Path):
    msg = _message(hf_folder(tmp_path / "m"), tmp_path / "nope.jinja")
    assert f"student.chat_template: {tmp_path / 'nope.jinja'}: no such file" in msg
    with pytest.raises(StudentError, match="no such file"):  # a GGUF student's override too
        student_hf.student_inputs(StudentConfig(chat_template=str(tmp_path / "nope.jinja")))


def test_an_override_replaces_every_copy_of_the_template(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": "x"}), "utf-8")
    chat_template.install_template(folder, CHATML + "{# mine #}")
    assert chat_template.folder_template(folder) == CHATML + "{# mine #}"
    assert not (folder / "chat_template.json").exists()
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())


# ------------------------------------------------------------------------------- hash


def test_the_hash_covers_the_files_that_matter(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    first = student_hf.folder_sha256(folder)
    (folder / "README.md").write_text("a model card", encoding="utf-8")
    assert student_hf.folder_sha256(folder) == first  # not part of the model
    _safetensors(folder / "model.safetensors", {"model.embed_tokens.weight": [512, 32]})
    changed = student_hf.folder_sha256(folder)
    assert changed != first
    assert student_hf.parameter_count(student_hf.weight_files(folder)) == 512 * 32


def test_base_source_names_a_gguf_or_a_folder(tmp_path: Path):
    (tmp_path / paths.BASE_MARKER).write_text(
        json.dumps({"source_hf": "m", "source_hf_sha256": "ab"}), encoding="utf-8"
    )
    assert base_source(tmp_path) == ("m", "ab")
    (tmp_path / paths.BASE_MARKER).write_text(
        json.dumps({"source_gguf": "s.gguf", "source_gguf_sha256": "cd"}), encoding="utf-8"
    )
    assert base_source(tmp_path) == ("s.gguf", "cd")


# ------------------------------------------------------------------------------- CLI


def _project(tmp_path: Path, student: str) -> Path:
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "x"
    leaf.mkdir(parents=True)
    params = tmp_path / "params.yaml"
    params.write_text(f"taxonomy: {{root: taxonomy}}\nstudent: {student}\n", encoding="utf-8")
    return params


def test_validate_and_build_say_what_is_wrong_with_the_student(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
):
    params = _project(tmp_path, "{hf: models/m}")
    problem = student_problem(params)
    assert problem is not None
    assert problem.startswith(f"{params}: student.hf: {tmp_path / 'models/m'}: no such folder")
    status = run_validate([], ilab_strict=False, fmt="text", params_path=params)
    err = capsys.readouterr().err
    assert status == 2 and "no such folder" in err and "Traceback" not in err
    status = student_checked(params)
    err = capsys.readouterr().err
    assert status == 2 and "labmake build: error:" in err and "no such folder" in err
    hf_folder(tmp_path / "models" / "m")

    def refuse(hf_dir: Path, out: Path, arch: str) -> None:
        raise ExportError(f"{hf_dir / 'tokenizer.json'}: a Metaspace pre-tokenizer that prepends")

    monkeypatch.setattr("labmake.export.tokenizer.write_hf_tokenizer_gguf", refuse)
    monkeypatch.setattr("labmake.training.space_prefix.use_llama_cpp_prefix", lambda d: False)
    problem = str(student_problem(params))
    assert "a Metaspace pre-tokenizer" in problem and "read the exported model's text" in problem
    monkeypatch.setattr(student_hf, "check_tokenizer", lambda folder: None)
    assert student_problem(params) is None


def test_a_tokenizer_transformers_cannot_load_is_said_not_raised(tmp_path: Path):
    folder = hf_folder(tmp_path / "m")
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 7}', encoding="utf-8")
    with pytest.raises(StudentError, match="transformers cannot load the tokenizer"):
        student_hf.check_tokenizer(folder)


def test_validate_reports_both_sources_set(tmp_path: Path):
    params = _project(tmp_path, "{hf: m, gguf: s.gguf}")
    assert "are both set" in str(student_problem(params))


def test_build_notices_a_student_folder_edited_in_place(tmp_path: Path):
    from labmake.cli import build_state

    folder = hf_folder(tmp_path / "m")
    template = tmp_path / "chat.jinja"
    template.write_text(CHATML, encoding="utf-8")
    student = StudentConfig(hf=str(folder), chat_template=str(template))
    files = student_hf.student_files(student)
    assert [p.name for p in files] == [
        "chat.jinja",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    inputs = build_state.Inputs(tmp_path, template, tmp_path, tmp_path / "p", tmp_path / "c")
    before = build_state.Inputs(**{**inputs.__dict__, "student": tuple(files)}).signature()
    _safetensors(folder / "model.safetensors", {"model.embed_tokens.weight": [512, 32]})
    after = build_state.Inputs(**{**inputs.__dict__, "student": tuple(files)}).signature()
    assert before != after


def test_build_dry_run_stops_before_snakemake(tmp_path: Path, capsys, monkeypatch):
    import yaml
    from hostile import repo_params

    from labmake import cli
    from labmake.cli import build

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("labmake build started Snakemake")

    monkeypatch.setattr(build.subprocess, "run", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taxonomy" / "compositional_skills" / "x").mkdir(parents=True)
    hf_folder(tmp_path / "m", auto_map={"AutoModelForCausalLM": "modeling_x.X"})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(repo_params(student={"hf": "m"})), encoding="utf-8")
    assert cli.main(["build", "--params", str(params), "-n"]) == 2
    err = capsys.readouterr().err
    assert "labmake build: error:" in err and "config.json has auto_map" in err
    assert "Traceback" not in err and "taxonomy errors" not in err


def test_labmake_try_reads_the_hf_student_from_the_project_or_the_tuned_gguf(tmp_path: Path):
    import yaml
    from hostile import repo_params

    from labmake.cli.trial_project import try_params

    raw = repo_params(student={"gguf": None, "hf": "models/m", "chat_template": "chat.jinja"})
    cfg = validate(yaml.safe_load(yaml.safe_dump(raw)))
    params = try_params(raw, cfg, {"skills"}, None, tmp_path)
    assert params["student"]["hf"] == str(tmp_path / "models/m")
    assert params["student"]["chat_template"] == str(tmp_path / "chat.jinja")
    tuned = try_params(raw, cfg, {"skills"}, "student/model-ab.gguf", tmp_path)
    assert tuned["student"] == {
        "gguf": "student/model-ab.gguf",
        "chat_template": str(tmp_path / "chat.jinja"),
    }
    validate({**tuned, "taxonomy": {"root": "taxonomy"}})  # one student source, as required
