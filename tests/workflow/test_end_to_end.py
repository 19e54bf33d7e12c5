"""ONE real snakemake run through every rule, on the 2-leaf test taxonomy, with the tiny random
student and the deterministic fake teacher; then the incremental-rebuild plans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from helpers import KNOWLEDGE, SKILL, make_tiny_workdir, planned_jobs, snakemake

from labmake.core import artifacts

pytestmark = [pytest.mark.workflow, pytest.mark.model]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    workdir = make_tiny_workdir(tmp_path_factory.mktemp("build"), tiny_student_gguf)
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
    return workdir


def test_seeds_generated_and_filtered(built: Path):
    seeds = artifacts.read_json(built / f"build/seeds/{KNOWLEDGE}.json")
    assert seeds["kind"] == "knowledge" and seeds["chunks"] and len(seeds["seed_examples"]) == 15
    generated = artifacts.read_jsonl(built / f"build/generated/{KNOWLEDGE}.jsonl")
    assert {r["pipeline"] for r in generated} == {"knowledge"}
    assert {r["teacher"] for r in generated} == {"fake-for-tests:v1"}
    for leaf in (KNOWLEDGE, SKILL):
        stats = artifacts.read_json(built / f"build/filtered/{leaf}.stats.json")
        assert sum(stats["removed_by_pipeline"].values()) > 0  # the judges had work to do
        samples = artifacts.read_jsonl(built / f"build/filtered/{leaf}.jsonl")
        assert len(samples) == stats["kept"] > 0
        assert all(s["messages"][1]["content"] == s["answer"] for s in samples)


def test_mix_holds_out_eval_items(built: Path):
    data = {
        n: artifacts.read_jsonl(built / f"build/data/{n}.jsonl")
        for n in ("knowledge", "skills", "eval")
    }
    assert {r["leaf"] for r in data["eval"]} == {KNOWLEDGE, SKILL}
    held_out = {r["question"] for r in data["eval"]}
    assert not held_out & {r["question"] for r in data["knowledge"] + data["skills"]}
    assert {r["leaf"] for r in data["knowledge"]} == {KNOWLEDGE}
    assert {r["leaf"] for r in data["skills"]} == {SKILL}


def test_multiple_choice_is_written_from_the_knowledge_documents(built: Path):
    from labmake.core.text import content_overlap
    from labmake.sdg.blocks.options import option_key

    assert not (built / f"build/mc/{SKILL}.jsonl").exists()  # skills get no multiple choice
    records = artifacts.read_jsonl(built / f"build/mc/{KNOWLEDGE}.jsonl")
    assert {r["pipeline"] for r in records} == {"multiple_choice"}
    items = artifacts.read_jsonl(built / "build/data/multiple_choice.jsonl")
    assert items and len(items) == sum(r["status"] == "kept" for r in records)
    chunks = artifacts.read_json(built / f"build/seeds/{KNOWLEDGE}.json")["chunks"]
    for item in items:
        assert item["leaf"] == KNOWLEDGE and item["teacher"] == "fake-for-tests:v1"
        assert item["chunk"] == chunks[item["chunk_index"]]
        right = item["options"][item["correct"]]
        assert content_overlap(right, item["chunk"]) >= 0.5  # grounded in its chunk
        assert len({option_key(o) for o in item["options"]}) == len(item["options"]) >= 2
        assert item["option_sources"][item["correct"]] == "answer"
        assert all(
            s == "teacher" or s.startswith("leaf:")
            for i, s in enumerate(item["option_sources"])
            if i != item["correct"]
        )


def test_training_moved_adapter_and_not_base(built: Path):
    from safetensors.torch import load_file

    for phase in ("knowledge", "skills"):
        metrics = artifacts.read_json(built / f"build/checkpoints/{phase}/metrics.json")
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

    from labmake.core.llama import open_llama

    for quant in ("F16", "Q4_K_M", "Q8_0"):
        path = built / f"build/model/model.{quant}.gguf"
        reader = GGUFReader(path)
        keys = set(reader.fields)
        assert {"labmake.version", "labmake.taxonomy_sha256", "labmake.params_sha256"} <= keys
        llm = open_llama(path, n_ctx=256, n_threads=1)
        out = llm.create_completion("The lighthouse", max_tokens=8, temperature=0.0)
        assert out["usage"]["completion_tokens"] > 0
        llm.close()


def test_report_and_manifest(built: Path):
    report = artifacts.read_json(built / "build/eval/report.json")
    assert set(report["leaves"]) == {KNOWLEDGE, SKILL}
    nll = report["overall"]["reference_nll"]
    base, tuned = nll["models"]["base"]["mean"], nll["models"]["tuned"]["mean"]
    assert base > 0 and tuned > 0
    delta = nll["delta"]["tuned"]
    assert delta["mean"] == pytest.approx(tuned - base, abs=1e-5)
    assert delta["ci"][0] <= delta["mean"] <= delta["ci"][1]
    # every phase is scored on its own; the last one is what the merge exported
    assert set(nll["models"]) == {"base", "phase-knowledge", "phase-skills", "tuned"}
    assert nll["models"]["phase-skills"]["mean"] == pytest.approx(tuned, abs=1e-2)
    quants = yaml.safe_load((built / "params.yaml").read_text())["export"]["quantizations"]
    answers = {"base"} | {f"gguf-{q}" for q in ["F16", *quants]}
    assert set(report["overall"]["token_f1"]["models"]) == answers
    assert set(report["overall"]["rouge_l"]["models"]) == answers
    mc_items = artifacts.read_jsonl(built / "build/data/multiple_choice.jsonl")
    mc = report["leaves"][KNOWLEDGE]["multiple_choice"]
    assert mc["models"]["tuned"]["n"] == len(mc_items) >= 1
    assert set(mc["models"]) == {"base", "phase-knowledge", "phase-skills", "tuned"}
    assert "multiple_choice" not in report["leaves"][SKILL]
    # The report's questions are the generated ones, with every HF model's choice recorded.
    assert [q["question"] for q in report["multiple_choice"]] == [i["question"] for i in mc_items]
    for q, item in zip(report["multiple_choice"], mc_items, strict=True):
        assert q["options"] == item["options"] and q["correct"] == item["correct"]
        assert set(q["chosen"]) == set(mc["models"])
        assert all(0 <= c < len(q["options"]) for c in q["chosen"].values())
    html = (built / "build/report.html").read_text(encoding="utf-8")
    assert 'id="evaluation"' in html and 'src="http' not in html
    assert html.count('src="data:image/svg+xml;base64,') >= 6
    manifest = artifacts.read_json(built / "build/manifest.json")
    by_path = {f["path"]: f for f in manifest["outputs"]}
    q4 = by_path["build/model/model.Q4_K_M.gguf"]
    assert q4["sha256"] == artifacts.sha256_file(built / q4["path"])
    assert manifest["inputs"]["labmake.leaves"] == 2


def test_incremental_plans(built: Path):
    assert planned_jobs(built) == {}  # nothing changed: nothing to do
    # Multiple choice is evaluation data only: new questions re-score the Hugging Face models
    # (not the GGUFs' answers) and never retrain.
    params_path = built / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["evaluate"]["multiple_choice"] = {"questions_per_chunk": 1, "options": 3}
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    phases = len(params["train"]["phases"])
    jobs = planned_jobs(built)
    jobs.pop("all", None)
    assert jobs == {
        "generate_multiple_choice": 1,
        "multiple_choice": 1,
        "evaluate": 2 + phases,
        "report": 1,
        "manifest": 1,
    }
    params_path.write_text(original)
    qna = built / "taxonomy" / KNOWLEDGE / "qna.yaml"
    qna.write_text(qna.read_text() + "\n")
    jobs = planned_jobs(built)
    # Only the edited leaf's branch, then the shared tail.
    assert jobs["seeds"] == jobs["generate"] == jobs["filter"] == 1
    assert jobs["generate_multiple_choice"] == jobs["multiple_choice"] == 1
    assert jobs["mix"] == 1 and jobs["train"] == 2
    # every model is scored again (the held-out items changed), then one report
    params = yaml.safe_load((built / "params.yaml").read_text())
    ggufs = {"F16", *params["export"]["quantizations"]}
    phases = len(params["train"]["phases"])
    assert jobs["evaluate"] == 2 + phases + len(ggufs) and jobs["report"] == 1
    assert "base_model" not in jobs
