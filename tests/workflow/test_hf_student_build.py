"""A build whose student is a Hugging Face folder (student.hf) with its own chat template file
(student.chat_template): Snakemake runs every rule to GGUFs llama.cpp loads, the folder's hash
is the base model's provenance, and editing the template rebuilds from the base."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers import make_tiny_workdir, planned_jobs, snakemake, tiny_params

from labmake.core import artifacts, paths

pytestmark = [pytest.mark.workflow, pytest.mark.model, pytest.mark.slow]

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
    "else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@pytest.fixture(scope="module", params=["gemma3", "llama3"])
def built(request, tmp_path_factory: pytest.TempPathFactory, tiny_hf_student: Path) -> Path:
    """The tiny Gemma 3 (SentencePiece), and a tiny Llama 3 (byte-level BPE, llama3 rope)."""
    workdir = tmp_path_factory.mktemp(f"hf-build-{request.param}")
    folder = workdir / "models" / "tiny-hf"
    if request.param == "llama3":
        import tiny_families

        tiny_families.make_hf_family(tiny_families.SPECS["llama3"], folder)
    else:
        folder.mkdir(parents=True)
        for path in tiny_hf_student.iterdir():  # the model as save_pretrained leaves it
            if path.name not in (paths.TOKENIZER_GGUF, paths.BASE_MARKER):
                shutil.copyfile(path, folder / path.name)
    (workdir / "chat.jinja").write_text(TEMPLATE, encoding="utf-8")
    params = tiny_params(Path("unused.gguf"))
    params["student"] = {"hf": "models/tiny-hf", "chat_template": "chat.jinja"}
    make_tiny_workdir(workdir, Path("unused.gguf"), params)
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
    return workdir


def test_hf_student_builds_to_ggufs_with_its_provenance_and_template(built: Path):
    from gguf import GGUFReader

    from labmake.core.llama import open_llama
    from labmake.training.student_hf import folder_sha256

    sha = folder_sha256(built / "models/tiny-hf")
    template_sha = artifacts.sha256_file(built / "chat.jinja")
    marker = artifacts.read_json(built / paths.BASE_DONE)
    assert (marker["source_hf"], marker["source_hf_sha256"]) == ("tiny-hf", sha)
    assert (marker["chat_template"], marker["chat_template_sha256"]) == ("chat.jinja", template_sha)
    assert (built / paths.STUDENT_GGUF).is_file()  # the base answered through it
    for quant in ("F16", "Q4_K_M"):
        path = built / paths.gguf(quant)
        fields = {k: f.contents() for k, f in GGUFReader(path).fields.items()}
        assert fields["labmake.base_model"] == "tiny-hf"
        assert fields["labmake.base_model_sha256"] == sha
        assert fields["tokenizer.chat_template"] == TEMPLATE
        llm = open_llama(path, n_ctx=256, n_threads=1)
        try:
            out = llm.create_chat_completion(
                [{"role": "user", "content": "Where is the lighthouse?"}], max_tokens=6
            )
        finally:
            llm.close()
        assert out["usage"]["completion_tokens"] > 0
    report = artifacts.read_json(built / paths.EVAL_REPORT)
    assert "base" in report["overall"]["token_f1"]["models"]
    manifest = artifacts.read_json(built / paths.MANIFEST)
    assert manifest["inputs"]["labmake.base_model_sha256"] == sha


def test_editing_the_template_or_the_folder_rebuilds_from_the_base(built: Path):
    template = built / "chat.jinja"
    template.write_text(TEMPLATE + "{# edited #}", encoding="utf-8")
    jobs = planned_jobs(built)
    assert jobs.get("base_model") == 1 and jobs.get("student_gguf") == 1
    assert not {"seeds", "generate", "filter"} & set(jobs)  # the data stays as it is
    template.write_text(TEMPLATE, encoding="utf-8")
    params = yaml.safe_load((built / "params.yaml").read_text())
    assert params["student"]["hf"] == "models/tiny-hf"
