"""ONE real snakemake run through every rule, on the 2-leaf test taxonomy, with the tiny random
student and the deterministic fake teacher; then the incremental-rebuild plans."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labmake import io

pytestmark = [pytest.mark.workflow, pytest.mark.model]

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
KNOWLEDGE = "knowledge/test/lighthouses"
SKILL = "compositional_skills/test/rhymes"


def tiny_params(student_gguf: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["student"] = {"gguf": str(student_gguf)}
    params["teacher"] = {**params["teacher"], "backend": "fake-for-tests", "n_ctx": 1024}
    params["generate"] = {"requests_per_leaf": 4, "examples_per_prompt": 3}
    params["train"]["max_seq_len"] = 128
    for phase in params["train"]["phases"]:
        phase.update(max_steps=4, batch_size=2, learning_rate=1e-2, warmup_steps=0)
    params["evaluate"] = {"max_new_tokens": 8, "n_threads": 1}
    return params


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--profile",
        str(REPO / "profiles/local"),
        *args,
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)


def planned_jobs(workdir: Path) -> dict[str, int]:
    """Rule -> job count of a dry run (Snakemake's "Job stats" table)."""
    result = snakemake(workdir, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = dict((m[0], int(m[1])) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE))
    jobs.pop("total", None)
    return jobs


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    workdir = tmp_path_factory.mktemp("build")
    shutil.copytree(REPO / "tests/data/taxonomy", workdir / "taxonomy")
    (workdir / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_student_gguf)))
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
    return workdir


def test_seeds_generated_and_filtered(built: Path):
    seeds = io.read_json(built / f"build/seeds/{KNOWLEDGE}.json")
    assert seeds["kind"] == "knowledge" and seeds["chunks"] and len(seeds["seed_examples"]) == 15
    generated = io.read_jsonl(built / f"build/generated/{KNOWLEDGE}.jsonl")
    assert [r["index"] for r in generated] == [0, 1, 2, 3]
    assert {r["teacher"] for r in generated} == {"fake-for-tests:v1"}
    for leaf in (KNOWLEDGE, SKILL):
        stats = io.read_json(built / f"build/filtered/{leaf}.stats.json")
        assert stats["removed"].get("malformed", 0) >= 4  # the fake teacher's broken items
        samples = io.read_jsonl(built / f"build/filtered/{leaf}.jsonl")
        assert len(samples) == stats["kept"] > 0
        assert all(s["messages"][1]["content"] == s["answer"] for s in samples)


def test_mix_holds_out_eval_items(built: Path):
    data = {
        n: io.read_jsonl(built / f"build/data/{n}.jsonl") for n in ("knowledge", "skills", "eval")
    }
    assert {r["leaf"] for r in data["eval"]} == {KNOWLEDGE, SKILL}
    held_out = {r["question"] for r in data["eval"]}
    assert not held_out & {r["question"] for r in data["knowledge"] + data["skills"]}
    assert {r["leaf"] for r in data["knowledge"]} == {KNOWLEDGE}
    assert {r["leaf"] for r in data["skills"]} == {SKILL}


def test_training_moved_adapter_and_not_base(built: Path):
    from safetensors.torch import load_file

    for phase in ("knowledge", "skills"):
        metrics = io.read_json(built / f"build/checkpoints/{phase}/metrics.json")
        losses = metrics["loss"]
        assert len(losses) == 4 and len(set(losses)) > 1  # the loss moved
        adapter = load_file(built / f"build/checkpoints/{phase}/adapter_model.safetensors")
        assert any(float(t.abs().sum()) > 0 for name, t in adapter.items() if "lora_B" in name)
    base = load_file(built / "build/base/model.safetensors")
    merged = load_file(built / "build/model/hf/model.safetensors")
    changed = {k for k in base if k in merged and not (base[k] == merged[k]).all()}
    targets = yaml.safe_load((built / "params.yaml").read_text())["train"]["phases"][0]["lora"]
    pattern = re.compile(r"\.(" + "|".join(targets["target_modules"]) + r")\.weight$")
    assert changed and all(pattern.search(k) for k in changed)  # only LoRA targets moved


def test_ggufs_load_generate_and_carry_provenance(built: Path):
    from gguf import GGUFReader
    from llama_cpp import Llama

    for quant in ("F16", "Q4_K_M", "Q8_0"):
        path = built / f"build/model/model.{quant}.gguf"
        reader = GGUFReader(path)
        keys = set(reader.fields)
        assert {"labmake.version", "labmake.taxonomy_sha256", "labmake.params_sha256"} <= keys
        llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
        out = llm.create_completion("The lighthouse", max_tokens=8, temperature=0.0)
        assert out["usage"]["completion_tokens"] > 0
        llm.close()


def test_report_and_manifest(built: Path):
    report = io.read_json(built / "build/eval/report.json")
    assert set(report["leaves"]) == {KNOWLEDGE, SKILL}
    nll = report["overall"]["reference_nll"]
    assert (
        nll["base"] > 0
        and nll["tuned"] > 0
        and nll["delta"] == pytest.approx(nll["tuned"] - nll["base"], abs=1e-5)
    )
    assert set(report["overall"]["token_f1"]) == {"Q4_K_M", "Q8_0"}
    manifest = io.read_json(built / "build/manifest.json")
    by_path = {f["path"]: f for f in manifest["outputs"]}
    q4 = by_path["build/model/model.Q4_K_M.gguf"]
    assert q4["sha256"] == io.sha256_file(built / q4["path"])
    assert manifest["inputs"]["labmake.leaves"] == 2


def test_incremental_plans(built: Path):
    assert planned_jobs(built) == {}  # nothing changed: nothing to do
    qna = built / "taxonomy" / KNOWLEDGE / "qna.yaml"
    qna.write_text(qna.read_text() + "\n")
    jobs = planned_jobs(built)
    # Only the edited leaf's branch, then the shared tail.
    assert jobs["seeds"] == jobs["generate"] == jobs["filter"] == 1
    assert jobs["mix"] == 1 and jobs["train"] == 2 and jobs["evaluate"] == 1
    assert "base_model" not in jobs
