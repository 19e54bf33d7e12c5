"""Incremental rebuilds, counted: which jobs each kind of edit re-runs, and which leaves the
teacher is asked about.

One real tiny build (test taxonomy, tiny random student, fake teacher) in a COPY of the project
tree, so that touching labmake's code touches the copy and never the real source, and so that
edits other people make to the real tree meanwhile cannot leak into the counts. Then each edit
is checked with a dry run (params and code edits, which are undone afterwards, mtimes
included) or with a real rebuild of the data stages (leaf edits, where the teacher requests are
the point). Assertions name the per-leaf rules and the data rules; the training/export tail is
checked as "rules other than these", so rules added to the tail later do not break them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import (
    KNOWLEDGE,
    SKILL,
    Job,
    copy_project,
    dry_run,
    project_env,
    project_snakemake,
    run,
)

from labmake.core import artifacts
from labmake.testing.fake_teacher import REQUEST_LOG_ENV, read_request_log

# One tiny build, a real no-op build, 3 data rebuilds and ~15 dry runs: 1.5-3.5 min on 2 cores.
pytestmark = [pytest.mark.workflow, pytest.mark.model, pytest.mark.slow]

PER_LEAF = {"seeds", "generate", "filter"}
DATA = PER_LEAF | {"mix"}
EVAL = "build/eval/"
NEW_LEAF = "compositional_skills/test/zorblat"


def rules(jobs: list[Job]) -> set[str]:
    return {job.rule for job in jobs}


def evaluation(jobs: list[Job]) -> set[str]:
    """The rules writing the evaluation (build/eval/...), whatever they are named."""
    return {job.rule for job in jobs if job.output.startswith(EVAL)}


def leaves_of(jobs: list[Job], rule: str) -> list[str]:
    return sorted(job.wildcards["leaf"] for job in jobs if job.rule == rule)


def plan(root: Path) -> dict:
    result = run(root, sys.executable, "-m", "labmake.cli", "plan", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def plan_leaves_to_generate(root: Path) -> list[str]:
    doc = plan(root)
    return sorted(row["leaf"] for row in doc["leaves"] if row["status"] in ("new", "changed"))


def requests_by_leaf(log: Path) -> dict[str, int]:
    """Logged teacher requests per leaf (the Snakemake job's ``leaf`` wildcard; requests from
    jobs without one, e.g. an evaluation judge, count as ``<rule>``)."""
    counts: dict[str, int] = {}
    for entry in read_request_log(log):
        key = entry["leaf"] or f"<{entry['rule']}>"
        counts[key] = counts.get(key, 0) + 1
    return counts


def restore_mtime(path: Path, stat: os.stat_result) -> None:
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# ------------------------------------------------------------------------------ the build


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    root = copy_project(tmp_path_factory.mktemp("incremental") / "project", tiny_student_gguf)
    log = root.parent / "teacher-requests.log"
    project_snakemake(root, env=project_env(root, **{REQUEST_LOG_ENV: str(log)}))
    counts = requests_by_leaf(log)
    assert counts.get(KNOWLEDGE, 0) > 0 and counts.get(SKILL, 0) > 0, counts
    return root


@pytest.fixture()
def teacher_log(project: Path):
    """A fresh request log for one test's commands, and the environment that writes it."""
    log = project.parent / "teacher-requests.log"
    log.unlink(missing_ok=True)
    return log, project_env(project, **{REQUEST_LOG_ENV: str(log)})


def test_noop_build_does_nothing_quickly_and_plan_agrees(project: Path, teacher_log):
    log, env = teacher_log
    assert dry_run(project) == []
    assert plan_leaves_to_generate(project) == []
    assert plan(project)["totals"]["requests"] == 0
    outputs = {p: p.stat().st_mtime_ns for p in (project / "build").rglob("*") if p.is_file()}
    start = time.monotonic()
    result = project_snakemake(project, env=env)
    took = time.monotonic() - start
    assert "Nothing to be done" in result.stdout + result.stderr
    assert took < 60, f"a no-op build took {took:.1f} s"  # measured ~3 s; generous under load
    assert read_request_log(log) == []
    after = {p: p.stat().st_mtime_ns for p in (project / "build").rglob("*") if p.is_file()}
    changed = {p for p in outputs if after.get(p) != outputs[p] and "/logs/" not in str(p)}
    assert not changed, f"a no-op build rewrote {sorted(map(str, changed))[:5]}"


def _with_params(project: Path, edit) -> list[Job]:
    """Dry-run the build with params.yaml edited by ``edit(params)``, then put it back."""
    path = project / "params.yaml"
    original, stat = path.read_text(), path.stat()
    params = yaml.safe_load(original)
    edit(params)
    path.write_text(yaml.safe_dump(params))
    try:
        return dry_run(project)
    finally:
        path.write_text(original)
        restore_mtime(path, stat)


def params_triggered(jobs: list[Job]) -> set[str]:
    return {job.rule for job in jobs if "Params have changed" in job.reason}


def test_filter_knob_reruns_generate_filters_and_tail(project: Path):
    """The yield floor counts what the filters accept, so their knobs re-run generate too (its
    requests come back from the cache; a leaf asks more only when it now needs another round);
    what the filter stage does with a flagged leaf re-runs the filters alone."""

    def edit(params):
        params["filter"]["min_question_words"] += 1

    jobs = _with_params(project, edit)
    # Snakemake names one reason per job: filter's is generate's new output, which it reads.
    assert params_triggered(jobs) == {"generate"}
    assert leaves_of(jobs, "generate") == leaves_of(jobs, "filter") == sorted([KNOWLEDGE, SKILL])
    assert not rules(jobs) & {"seeds", "base_model"}
    assert "mix" in rules(jobs) and "train" in rules(jobs)  # the tail follows the new data

    def flag(params):
        params["filter"]["flag_below"] = 1
        params["filter"]["on_empty"] = "fail"

    jobs = _with_params(project, flag)
    assert params_triggered(jobs) == {"filter"}
    assert not rules(jobs) & {"seeds", "generate", "base_model"}


def test_generate_knob_reruns_generate_not_seeds(project: Path):
    def edit(params):
        params["generate"]["requests_per_leaf"] = 5

    jobs = _with_params(project, edit)
    assert params_triggered(jobs) == {"generate"}
    assert leaves_of(jobs, "generate") == sorted([KNOWLEDGE, SKILL])
    assert not rules(jobs) & {"seeds", "base_model"}


def test_one_phase_learning_rate_reruns_that_phase_and_after(project: Path):
    def edit(params):
        skills = next(p for p in params["train"]["phases"] if p["name"] == "skills")
        skills["learning_rate"] = 5e-3

    jobs = _with_params(project, edit)
    trained = sorted(job.wildcards["phase"] for job in jobs if job.rule == "train")
    assert trained == ["skills"]  # the knowledge phase, before it, is kept
    assert not rules(jobs) & (DATA | {"base_model"})
    # Export records the whole recipe in the GGUF's provenance, so it reads every knob.
    assert params_triggered(jobs) <= {"train", "gguf_f16"} and "train" in params_triggered(jobs)
    assert {"merge", "quantize"} <= rules(jobs)


def test_quantizations_rerun_export_and_evaluation_only(project: Path):
    def edit(params):
        params["export"]["quantizations"] = ["Q8_0"]

    jobs = _with_params(project, edit)
    assert not rules(jobs) & (DATA | {"base_model", "train", "merge"})
    assert [job.wildcards["quant"] for job in jobs if job.rule == "quantize"] == ["Q8_0"]
    assert "gguf_f16" in params_triggered(jobs) and evaluation(jobs)


def test_evaluation_knob_reruns_evaluation_only(project: Path):
    def edit(params):
        params["evaluate"]["max_new_tokens"] = 4

    jobs = _with_params(project, edit)
    assert params_triggered(jobs) and params_triggered(jobs) <= evaluation(jobs)
    assert not rules(jobs) & (DATA | {"base_model", "train", "merge", "gguf_f16", "quantize"})


def test_touch_without_change_reruns_nothing(project: Path):
    # Snakemake compares the checksums of small inputs that look newer: an mtime alone is no
    # edit. (So the edits below change content.)
    files = [project / "src/labmake/sdg/filters.py", project / "taxonomy" / KNOWLEDGE / "qna.yaml"]
    stats = [path.stat() for path in files]
    for path in files:
        path.touch()
    try:
        assert dry_run(project) == []
    finally:
        for path, stat in zip(files, stats, strict=True):
            restore_mtime(path, stat)


@pytest.mark.parametrize(
    ("module", "first", "untouched"),
    [
        ("sdg/filters.py", "filter", {"seeds", "generate", "base_model"}),
        ("sdg/generation.py", "generate", {"seeds", "base_model"}),
        ("training/loop.py", "train", DATA | {"base_model"}),
        # Reached from the train rule's stage function only through other modules (stage ->
        # training.phase -> training.loop -> training.resume): the derived code inputs see it.
        ("training/resume.py", "train", DATA | {"base_model"}),
    ],
)
def test_editing_a_stages_code_reruns_that_stage(project: Path, module, first, untouched):
    path = project / "src/labmake" / module
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + b"# an edit\n")
    try:
        jobs = dry_run(project)
    finally:
        path.write_bytes(original)
        restore_mtime(path, stat)
    assert first in rules(jobs)
    if first in PER_LEAF:
        assert leaves_of(jobs, first) == sorted([KNOWLEDGE, SKILL])
    assert not rules(jobs) & untouched
    assert dry_run(project) == []  # the edit undone, the build is up to date again


def test_editing_code_no_rule_runs_reruns_nothing(project: Path):
    """The `labmake plan` command is no rule's code: its edit plans no job."""
    path = project / "src/labmake/cli/plan.py"
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + b"# an edit\n")
    try:
        assert dry_run(project) == []
    finally:
        path.write_bytes(original)
        restore_mtime(path, stat)


def test_labmake_build_skips_snakemake_when_nothing_changed(project: Path, teacher_log):
    """After a build that finished, a no-op `labmake build` starts no Snakemake; any change
    (here a touched leaf) hands the decision back to Snakemake."""
    _, env = teacher_log

    def build() -> str:
        result = run(project, sys.executable, "-m", "labmake.cli", "build", env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stderr

    first = build()  # records what it saw (Snakemake ran: it had nothing to do)
    assert "Nothing to be done" in first and "Snakemake not started" not in first
    second = build()
    assert "Snakemake not started" in second and "Nothing to be done" not in second
    qna = project / "taxonomy" / KNOWLEDGE / "qna.yaml"
    stat = qna.stat()
    qna.touch()
    try:
        third = build()
    finally:
        restore_mtime(qna, stat)
    assert "Snakemake not started" not in third and "Nothing to be done" in third
    assert "not checked again" in third  # the other leaf's validation is remembered


def test_leaf_edits_rerun_only_their_branch(project: Path, teacher_log):
    log, env = teacher_log
    data_target = "build/data/mix.json"
    skill_generated = project / f"build/generated/{SKILL}.jsonl"
    skill_bytes, skill_mtime = skill_generated.read_bytes(), skill_generated.stat().st_mtime_ns

    # 1. Edit one leaf: its branch and the shared tail, nothing of the other leaf.
    qna = project / "taxonomy" / KNOWLEDGE / "qna.yaml"
    doc = yaml.safe_load(qna.read_text())
    doc["seed_examples"][0]["questions_and_answers"][0]["answer"] += " It still stands."
    qna.write_text(yaml.safe_dump(doc, sort_keys=False))
    jobs = dry_run(project)
    for rule in PER_LEAF:
        assert leaves_of(jobs, rule) == [KNOWLEDGE]
    assert {"mix", "train", "merge"} <= rules(jobs) and evaluation(jobs)
    assert "base_model" not in rules(jobs)
    assert plan_leaves_to_generate(project) == leaves_of(jobs, "generate")
    project_snakemake(project, data_target, env=env)
    # The teacher's request cache may answer the leaf's unchanged prompts: only its own count.
    assert set(requests_by_leaf(log)) <= {KNOWLEDGE}, requests_by_leaf(log)
    assert skill_generated.read_bytes() == skill_bytes
    assert skill_generated.stat().st_mtime_ns == skill_mtime
    # Only the tail is left to run: no per-leaf job for any leaf.
    assert not rules(dry_run(project)) & DATA
    assert plan_leaves_to_generate(project) == []

    # 2. Add a leaf: it alone is generated, and its samples reach the mix.
    log.unlink(missing_ok=True)
    new = project / "taxonomy" / NEW_LEAF
    new.mkdir(parents=True)
    doc = yaml.safe_load((project / "taxonomy" / SKILL / "qna.yaml").read_text())
    doc["task_description"] = "Translate the given English word into Zorblat, a made-up language."
    words = {"cat": "tacorb", "moon": "noomorb", "tree": "eertorb", "light": "thgilorb"}
    words |= {"rain": "niarorb"}
    doc["seed_examples"] = [
        {"question": f"Translate {en} into Zorblat.", "answer": f"In Zorblat, {en} is {zo}."}
        for en, zo in words.items()
    ]
    (new / "qna.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    jobs = dry_run(project, data_target)
    for rule in PER_LEAF:
        assert leaves_of(jobs, rule) == [NEW_LEAF]
    assert plan_leaves_to_generate(project) == [NEW_LEAF]
    project_snakemake(project, data_target, env=env)
    counts = requests_by_leaf(log)
    assert list(counts) == [NEW_LEAF] and counts[NEW_LEAF] > 0, counts
    skills = artifacts.read_jsonl(project / "build/data/skills.jsonl")
    assert {r["leaf"] for r in skills} == {SKILL, NEW_LEAF}

    # 3. Remove that leaf: no teacher, no per-leaf job; the mix drops its samples.
    log.unlink(missing_ok=True)
    shutil.rmtree(new)
    jobs = dry_run(project, data_target)
    assert rules(jobs) == {"mix"}
    assert plan_leaves_to_generate(project) == []
    project_snakemake(project, data_target, env=env)
    assert read_request_log(log) == []
    data = {n: artifacts.read_jsonl(project / f"build/data/{n}.jsonl") for n in ("skills", "eval")}
    assert {r["leaf"] for r in data["skills"]} == {SKILL}
    assert NEW_LEAF not in {r["leaf"] for r in data["eval"]}
