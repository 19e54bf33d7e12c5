"""labmake try end to end on the tiny build (2-leaf test taxonomy, tiny random student, fake
teacher): its own corner (the build's files and Snakemake state untouched, the teacher cache
shared), the side-by-side result, a re-run after an edit that redoes only that leaf's branch,
and a try with no edit that runs nothing."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import BIN, KNOWLEDGE, SKILL, copy_project, project_env, tiny_params

from labmake.core import artifacts

pytestmark = [pytest.mark.workflow, pytest.mark.model]


def _labmake(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / "labmake"), *args],
        cwd=root,
        env=project_env(root, COLUMNS="160"),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


def _hashes(root: Path) -> dict[str, str]:
    """Every file of the build and its Snakemake state, but the try's folder and the shared
    teacher cache."""
    files = [*(root / "build").rglob("*"), *(root / ".snakemake").rglob("*")]
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file()
        and not p.is_relative_to(root / "build/try")
        and not p.is_relative_to(root / "build/cache/teacher")
    }


def _ran(root: Path) -> set[tuple[str, str]]:
    record = artifacts.read_json(root / "build/try/last-try.json")
    return {(job["rule"], job["name"]) for job in record["jobs"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    params = tiny_params(tiny_student_gguf)
    params["try"] = {"max_steps": 2, "questions": 4, "samples_per_chunk": 1}
    root = copy_project(tmp_path_factory.mktemp("try"), tiny_student_gguf, params)
    # Stand-ins for a build's artifacts and Snakemake state: a try must leave them as they are.
    artifacts.write_json(root / f"build/seeds/{SKILL}.json", {"leaf": SKILL, "stale": True})
    (root / "build/model").mkdir(parents=True)
    (root / "build/model/hf.txt").write_text("the build's model\n")
    (root / ".snakemake/metadata").mkdir(parents=True)
    (root / ".snakemake/metadata/x").write_text("state\n")
    return root


@pytest.fixture(scope="module")
def first(project: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    before = _hashes(project)
    return _labmake(project, "try", SKILL, KNOWLEDGE), before


def test_try_runs_in_its_own_corner_and_shares_the_teacher_cache(project: Path, first):
    _result, before = first
    assert _hashes(project) == before
    assert list((project / "build/cache/teacher").rglob("*.json"))  # the build's cache, filled
    assert not list((project / "build/try/build/cache").rglob("teacher/*"))
    try_params = yaml.safe_load((project / "build/try/params.yaml").read_text())
    assert [p["name"] for p in try_params["train"]["phases"]] == ["knowledge", "skills"]
    assert {p.name for p in (project / "build/try/taxonomy").rglob("qna.yaml")} == {"qna.yaml"}
    assert (project / "build/try/build/checkpoints/skills/labmake_phase.json").is_file()
    assert not (project / "build/try/build/model").exists()  # no merge, no GGUF in a try


def test_try_prints_both_models_answers_the_nll_and_the_funnel(project: Path, first):
    out = first[0].stdout
    for leaf in (SKILL, KNOWLEDGE):
        assert leaf in out
    assert "reference" in out and "before: the base" in out and "after: tried" in out
    assert out.count("reference NLL on ") == 2 and "interval" in out
    assert out.count("funnel: ") == 2 and " requests -> " in out and " kept" in out
    assert "where the time went" in out and "train skills" in out
    record = artifacts.read_json(project / "build/try/last-try.json")
    nll = record["leaves_outcome"][SKILL]["reference_nll"]
    assert nll["n"] >= 1 and len(nll["ci"]) == 2
    err = first[0].stderr
    assert "> generate " in err and "step ETA ~" in err


def test_a_try_with_no_edit_runs_nothing(project: Path, first):
    result = _labmake(project, "try", SKILL, KNOWLEDGE)
    assert "nothing changed since the last try" in result.stdout
    assert _ran(project) == set()
    assert "reference NLL on " in result.stdout


def test_an_edit_reruns_only_that_leafs_branch(project: Path, first):
    held_out = {
        r["answer"]
        for r in artifacts.read_jsonl(project / "build/try/build/data/eval.jsonl")
        if r["leaf"] == SKILL
    }
    qna = project / "taxonomy" / SKILL / "qna.yaml"
    data = yaml.safe_load(qna.read_text())
    trained = next(e["answer"] for e in data["seed_examples"] if e["answer"] not in held_out)
    qna.write_text(qna.read_text().replace(trained, trained.replace("rhymes", "rhymes nicely")))
    _labmake(project, "try", SKILL, KNOWLEDGE)
    ran = _ran(project)
    assert {("seeds", SKILL), ("generate", SKILL), ("filter", SKILL)} <= ran
    assert {r for r, leaf in ran if leaf == KNOWLEDGE} == set()  # the other leaf: nothing
    assert ("train", "skills") in ran and ("train", "knowledge") not in ran
    assert ("evaluate", "phase-skills") in ran and ("evaluate", "base") not in ran


def test_data_show_reads_the_try_folder(project: Path, first):
    result = _labmake(project, "data", "show", SKILL, "--try", "--rejected")
    assert SKILL in result.stdout and "funnel: " in result.stdout
