"""ONE real snakemake run through every rule, on the 2-leaf test taxonomy plus a leaf the teacher
cannot serve and the knowledge leaf again from a PDF, a Word file and a web page, with the tiny
random student and the deterministic fake teacher; then the incremental-rebuild plans."""

from __future__ import annotations

import difflib
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import KNOWLEDGE, SKILL, make_tiny_workdir, planned_jobs, snakemake

from labmake.core import artifacts
from labmake.testing.fake_teacher import SILENT

pytestmark = [pytest.mark.workflow, pytest.mark.model]


# A third leaf the fake teacher answers with nothing (its task names SILENT): the build must
# flag it and go on, training on the other leaves.
SILENT_LEAF = "compositional_skills/test/silent"
SILENT_QNA = f"""version: 2
created_by: labmake
task_description: A leaf no teacher can serve ({SILENT}).
seed_examples:
""" + "".join(
    f"  - question: What is the silent word number {i}?\n    answer: It is word {i}.\n"
    for i in range(5)
)


# The knowledge leaf again with its document as a PDF, a Word file and a web page (written by
# tests/document_files.py): each builds end to end, offline, like the Markdown one.
FORMAT_LEAVES = {fmt: f"knowledge/test/lighthouses_{fmt}" for fmt in ("pdf", "docx", "html")}


def add_format_leaves(taxonomy: Path) -> None:
    import document_files

    original = taxonomy / KNOWLEDGE
    title, sections = document_files.sections_of((original / "lighthouses.md").read_text())
    for fmt, leaf in FORMAT_LEAVES.items():
        folder = taxonomy / leaf
        folder.mkdir(parents=True)
        # The mix holds out seed questions per leaf: each copy asks its own (a question one
        # leaf holds out and another trains on would leak across them).
        qna = (original / "qna.yaml").read_text().replace("'*.md'", f"'*.{fmt}'")
        qna = qna.replace("?\n", f" (in the {fmt} copy)?\n")
        (folder / "qna.yaml").write_text(qna)
        shutil.copy(original / "attribution.txt", folder / "attribution.txt")
        writer = getattr(document_files, f"write_{fmt}")
        writer(folder / f"lighthouses.{fmt}", title, sections)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    workdir = make_tiny_workdir(tmp_path_factory.mktemp("build"), tiny_student_gguf)
    add_format_leaves(workdir / "taxonomy")
    silent = workdir / "taxonomy" / SILENT_LEAF
    silent.mkdir(parents=True)
    (silent / "qna.yaml").write_text(SILENT_QNA)
    attribution = workdir / "taxonomy" / SKILL / "attribution.txt"
    (silent / "attribution.txt").write_text(attribution.read_text())
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
    return workdir


def test_a_leaf_that_yields_nothing_is_flagged_and_the_rest_trains(built: Path):
    stats = artifacts.read_json(built / f"build/filtered/{SILENT_LEAF}.stats.json")
    assert stats["kept"] == 0 and stats["flagged"] and "min_kept" in stats["hint"]
    assert artifacts.read_jsonl(built / f"build/filtered/{SILENT_LEAF}.jsonl") == []
    rejected = artifacts.read_jsonl(built / f"build/generated/{SILENT_LEAF}.jsonl")
    assert rejected and all(r["raw"] and r["reason"] for r in rejected)
    assert len({r["round"] for r in rejected}) > 1  # the yield floor asked again, bounded
    log = (built / f"build/logs/filter/{SILENT_LEAF}.log").read_text()
    assert "kept 0 of 0" in log
    report = artifacts.read_json(built / "build/eval/report.json")
    assert [f["leaf"] for f in report["flagged_leaves"]] == [SILENT_LEAF]
    html = (built / "build/report.html").read_text(encoding="utf-8")
    banner = html.index("Leaves with little or no synthetic data")
    assert banner < html.index('id="inputs"') and SILENT_LEAF in html[banner:]
    # The other leaves' generated data was trained on; the silent leaf's seeds were too.
    skills = artifacts.read_jsonl(built / "build/data/skills.jsonl")
    assert {r["source"] for r in skills if r["leaf"] == SKILL} == {"seed", "generated"}
    assert {r["source"] for r in skills if r["leaf"] == SILENT_LEAF} == {"seed"}


def test_pdf_word_and_html_leaves_build_like_markdown(built: Path):
    markdown = artifacts.read_json(built / f"build/seeds/{KNOWLEDGE}.json")
    converters = {"pdf": "pypdfium2 ", "docx": "mammoth ", "html": "markdownify "}
    for fmt, leaf in FORMAT_LEAVES.items():
        seeds = artifacts.read_json(built / f"build/seeds/{leaf}.json")
        (document,) = seeds["documents"]
        assert document["format"] == fmt and document["converter"].startswith(converters[fmt])
        text = " ".join(" ".join(seeds["chunks"]).split())
        assert "Augustin-Jean Fresnel designed a new kind of lens" in text
        assert len(seeds["chunks"]) >= len(markdown["chunks"]) - 1
        stats = artifacts.read_json(built / f"build/filtered/{leaf}.stats.json")
        assert stats["kept"] > 0 and not stats["flagged"], stats
    knowledge = artifacts.read_jsonl(built / "build/data/knowledge.jsonl")
    assert set(FORMAT_LEAVES.values()) <= {r["leaf"] for r in knowledge}
    report = artifacts.read_json(built / "build/eval/report.json")
    assert set(FORMAT_LEAVES.values()) <= set(report["leaves"])


def test_seeds_generated_and_filtered(built: Path):
    seeds = artifacts.read_json(built / f"build/seeds/{KNOWLEDGE}.json")
    assert seeds["kind"] == "knowledge" and seeds["chunks"] and len(seeds["seed_examples"]) == 15
    generated = artifacts.read_jsonl(built / f"build/generated/{KNOWLEDGE}.jsonl")
    assert {r["pipeline"] for r in generated} == {"knowledge"}
    assert {r["teacher"] for r in generated} == {"fake-for-tests:v1"}
    for leaf in (KNOWLEDGE, SKILL):
        stats = artifacts.read_json(built / f"build/filtered/{leaf}.stats.json")
        assert sum(stats["removed_by_pipeline"].values()) > 0  # the judges had work to do
        assert not stats["flagged"]
        samples = artifacts.read_jsonl(built / f"build/filtered/{leaf}.jsonl")
        assert len(samples) == stats["kept"] > 0
        assert all(s["messages"][1]["content"] == s["answer"] for s in samples)


def test_mix_holds_out_eval_items(built: Path):
    data = {
        n: artifacts.read_jsonl(built / f"build/data/{n}.jsonl")
        for n in ("knowledge", "skills", "eval")
    }
    assert {r["leaf"] for r in data["eval"]} == {
        KNOWLEDGE,
        SKILL,
        SILENT_LEAF,
        *FORMAT_LEAVES.values(),
    }
    held_out = {r["question"] for r in data["eval"]}
    assert not held_out & {r["question"] for r in data["knowledge"] + data["skills"]}
    assert {r["leaf"] for r in data["knowledge"]} == {KNOWLEDGE, *FORMAT_LEAVES.values()}
    assert {r["leaf"] for r in data["skills"]} == {SKILL, SILENT_LEAF}


def test_multiple_choice_is_written_from_the_knowledge_documents(built: Path):
    from labmake.core.text import content_overlap
    from labmake.sdg.blocks.options import option_key

    assert not (built / f"build/mc/{SKILL}.jsonl").exists()  # skills get no multiple choice
    records = artifacts.read_jsonl(built / f"build/mc/{KNOWLEDGE}.jsonl")
    assert {r["pipeline"] for r in records} == {"multiple_choice"}
    every_item = artifacts.read_jsonl(built / "build/data/multiple_choice.jsonl")
    assert {i["leaf"] for i in every_item} <= {KNOWLEDGE, *FORMAT_LEAVES.values()}
    items = [i for i in every_item if i["leaf"] == KNOWLEDGE]
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
    assert set(report["leaves"]) == {KNOWLEDGE, SKILL, SILENT_LEAF, *FORMAT_LEAVES.values()}
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
    own = [i for i in mc_items if i["leaf"] == KNOWLEDGE]
    assert mc["models"]["tuned"]["n"] == len(own) >= 1
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
    assert manifest["inputs"]["labmake.leaves"] == 3 + len(FORMAT_LEAVES)


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
    try:  # the later tests read the build as built
        jobs = planned_jobs(built)
    finally:
        params_path.write_text(original)
    jobs.pop("all", None)
    assert jobs == {
        "generate_multiple_choice": 1 + len(FORMAT_LEAVES),  # one per knowledge leaf
        "multiple_choice": 1,
        "evaluate": 2 + phases,
        "report": 1,
        "model_card": 1,  # the card shows the scores
        "manifest": 1,
    }
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


def test_model_card_modelfile_retention_and_tracking(built: Path):
    report = artifacts.read_json(built / "build/eval/report.json")
    kl = report["retention"]["general"]["kl"]["models"]
    assert set(kl) >= {"base", "phase-knowledge", "phase-skills", "tuned", "gguf-F16"}
    assert kl["base"]["mean"] < 1e-4 < kl["tuned"]["mean"]  # the base is its own reference
    assert kl["tuned"]["ci"][0] <= kl["tuned"]["mean"] <= kl["tuned"]["ci"][1]
    assert set(report["knowledge_kept"]["leaves"]) == {KNOWLEDGE, *FORMAT_LEAVES.values()}
    html = (built / "build/report.html").read_text(encoding="utf-8")
    assert 'id="cost"' in html and "KL to the base" in html and "kept from the knowledge" in html
    card = (built / "build/model/README.md").read_text(encoding="utf-8")
    expected = (KNOWLEDGE, SKILL, "model.Q4_K_M.gguf", "labmake chat", "ollama create")
    expected += ("llama-cli", "KL to the base", "transformers", "## Licence")
    assert [e for e in expected if e not in card] == []
    modelfile = (built / "build/model/Modelfile").read_text(encoding="utf-8")
    assert "FROM ./model." in modelfile and 'PARAMETER stop "<end_of_turn>"' in modelfile
    manifest = artifacts.read_json(built / "build/manifest.json")
    hashed = {f["path"] for f in manifest["outputs"]}
    assert {"build/model/README.md", "build/model/Modelfile"} <= hashed
    # Tracking: event files for each phase and the evaluation, beside the build, not in it.
    runs = {p.name for p in (built / "build/tracking").iterdir()}
    assert runs == {"train-knowledge", "train-skills", "evaluation"}
    before = {p: p.read_bytes() for p in (built / "build/model").glob("*") if p.is_file()}
    result = snakemake(built, "--forcerun", "model_card", "--allowed-rules", "model_card")
    assert result.returncode == 0, result.stderr[-3000:]
    changed = {p: p.read_bytes() for p in before if p.read_bytes() != before[p]}
    assert not changed, "".join(  # the same bytes again; else, what moved
        "".join(
            difflib.unified_diff(before[p].decode().splitlines(True), b.decode().splitlines(True))
        )
        for p, b in changed.items()
    )


def test_max_retention_loss_fails_an_over_trained_build(built: Path, tmp_path: Path):
    work = tmp_path / "overtrained"
    shutil.copytree(built, work, symlinks=True)
    normal = artifacts.read_json(built / "build/eval/report.json")
    limit = 10 * normal["retention"]["general"]["kl"]["models"]["tuned"]["mean"]
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["evaluate"]["max_retention_loss"] = limit
    # Every weight, a high rate, four times the steps: measured on the tiny student, KL 0.69
    # nats/token against 0.005 for the tiny build's own settings.
    for phase in params["train"]["phases"]:
        phase.update(method="full", max_steps=16, learning_rate=1e-2)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = snakemake(work)
    assert result.returncode != 0
    assert "max_retention_loss" in result.stderr + (work / "build/logs/report/all.log").read_text()
    tuned = artifacts.read_json(work / "build/eval/tuned.json")["retention"]["kl"]
    assert sum(tuned) / len(tuned) > limit
