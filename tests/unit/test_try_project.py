"""labmake try's own folder: its params (the try: budget over the project's), the taxonomy view
that holds exactly the leaves tried, the student link, and the folders it refuses."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from labmake.cli.trial_project import (
    MARKER,
    TryError,
    link_student,
    prepare,
    sync_view,
    try_folder,
    try_params,
)
from labmake.core.config import load, validate

REPO = Path(__file__).resolve().parents[2]
SKILL = "compositional_skills/test/rhymes"
KNOWLEDGE = "knowledge/test/lighthouses"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "tests/data/taxonomy", tmp_path / "taxonomy")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def _raw(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def test_params_apply_the_budget_and_keep_the_phases_the_leaves_feed(project: Path):
    raw = _raw(project)
    raw["try"] = {"max_steps": 5, "questions": 7, "samples_per_chunk": 1}
    cfg = validate(dict(raw))
    params = try_params(raw, cfg, {"skills"}, None, project)
    assert "try" not in params and params["taxonomy"]["root"] == "taxonomy"
    assert [p["name"] for p in params["train"]["phases"]] == ["skills"]
    assert params["train"]["phases"][0]["max_steps"] == 5
    assert params["generate"]["freeform"]["questions"] == 7
    assert params["generate"]["knowledge"]["samples_per_chunk"] == 1
    assert params["evaluate"]["hf_answers"] is True
    assert params["mix"]["eval_generated_per_leaf"] == cfg.try_.eval_generated_per_leaf
    validate(params)  # the try's params check like any params.yaml
    both = try_params(raw, cfg, {"skills", "knowledge"}, None, project)
    assert [p["name"] for p in both["train"]["phases"]] == ["knowledge", "skills"]
    assert raw["train"]["phases"][0]["max_steps"] == 36  # the project's params are untouched


def test_relative_files_in_params_become_absolute(project: Path):
    raw = _raw(project)
    cfg = validate(_raw(project))
    raw["student"] = {"gguf": "models/student.gguf"}
    raw["generate"]["pipelines_dir"] = "my_pipelines"
    params = try_params(raw, cfg, {"skills"}, None, project)
    assert params["student"]["gguf"] == str(project / "models/student.gguf")
    assert params["generate"]["pipelines_dir"] == str(project / "my_pipelines")
    tuned = try_params(raw, cfg, {"skills"}, "student/model-ab.gguf", project)
    assert tuned["student"]["gguf"] == "student/model-ab.gguf"


def test_a_leaf_kind_without_a_phase_is_refused(project: Path):
    raw = _raw(project)
    raw["train"]["phases"] = [p for p in raw["train"]["phases"] if p["dataset"] == "knowledge"]
    with pytest.raises(TryError, match="no phase for the \\['skills'\\] data"):
        try_params(raw, validate(dict(raw)), {"skills"}, None, project)


def test_view_holds_exactly_the_leaves_tried_and_rewrites_only_edits(project: Path):
    taxonomy, view = project / "taxonomy", project / "view"
    (taxonomy / SKILL / "notes").mkdir()
    (taxonomy / SKILL / "notes/extra.md").write_text("a document in a subfolder\n")
    (taxonomy / SKILL / ".hidden").write_text("x")
    assert sync_view(taxonomy, [SKILL, KNOWLEDGE], view) > 0
    files = sorted(p.relative_to(view).as_posix() for p in view.rglob("*") if p.is_file())
    assert f"{SKILL}/qna.yaml" in files and f"{SKILL}/notes/extra.md" in files
    assert f"{KNOWLEDGE}/lighthouses.md" in files and f"{SKILL}/.hidden" not in files
    copy = view / SKILL / "qna.yaml"
    stamp = copy.stat().st_mtime_ns
    assert sync_view(taxonomy, [SKILL, KNOWLEDGE], view) == 0
    assert copy.stat().st_mtime_ns == stamp  # an unchanged copy keeps its time
    # An edit whose file keeps an old time is still a new copy, with a new time.
    source = taxonomy / SKILL / "qna.yaml"
    old = source.stat()
    source.write_text(source.read_text().replace("Hat rhymes", "Bat rhymes"))
    os.utime(source, ns=(old.st_atime_ns, old.st_mtime_ns - 10**10))
    time.sleep(0.01)
    assert sync_view(taxonomy, [SKILL], view) == 1
    assert "Bat rhymes" in copy.read_text() and copy.stat().st_mtime_ns > stamp
    assert not (view / KNOWLEDGE).exists()  # a leaf no longer tried leaves the view


def test_nested_leaves_are_copied_as_their_own(project: Path):
    taxonomy = project / "taxonomy"
    inner = taxonomy / SKILL / "inner"
    shutil.copytree(taxonomy / SKILL, inner)
    sync_view(taxonomy, [SKILL], project / "view")
    assert not (project / "view" / SKILL / "inner").exists()


def test_try_folder_refuses_the_project_and_its_build(project: Path):
    assert try_folder(project, "build/try") == (project / "build/try").resolve()
    for bad in (".", "build", "..", "build/seeds/x"):
        with pytest.raises(TryError):
            try_folder(project, bad)
    (project / "mine").mkdir()
    (project / "mine/precious.txt").write_text("keep")
    with pytest.raises(TryError, match="not a labmake try folder"):
        try_folder(project, "mine")
    (project / "mine" / MARKER).write_text("")
    assert try_folder(project, "mine") == (project / "mine").resolve()


def test_student_link_is_named_by_content(tmp_path: Path):
    model = tmp_path / "model.F16.gguf"
    model.write_bytes(b"one")
    first = link_student(tmp_path / "try", model)
    assert (tmp_path / "try" / first).resolve() == model.resolve()
    assert link_student(tmp_path / "try", model) == first
    model.write_bytes(b"two")
    second = link_student(tmp_path / "try", model)
    assert second != first and not (tmp_path / "try" / first).exists()


def test_prepare_writes_the_folder_and_nothing_of_the_project(project: Path):
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    cfg = load(project / "params.yaml")
    root = try_folder(project, "build/try")
    tried = prepare(root, project, _raw(project), cfg, [SKILL], None)
    assert tried.phases == ("skills",) and tried.tried == "phase-skills"
    assert (root / "params.yaml").is_file() and (root / "taxonomy" / SKILL / "qna.yaml").is_file()
    assert {p: p.read_bytes() for p in before} == before
    assert tried.model_targets() == ["build/eval/base.json", "build/eval/phase-skills.json"]


def test_the_try_section_is_named_try_in_params(project: Path):
    from labmake.core.config import BuildConfig, ConfigError
    from labmake.core.schema import help_at

    raw = _raw(project)
    raw["try"] = {"max_steps": 3, "folder": "elsewhere"}
    cfg = validate(raw)
    assert cfg.try_.max_steps == 3 and cfg.try_.folder == "elsewhere"
    assert help_at(BuildConfig, "try.max_steps") == "each phase's max_steps"
    for bad, says in (({"max_steps": 0}, "try.max_steps: min value is 1"), ({"x": 1}, "try.x")):
        raw["try"] = bad
        with pytest.raises(ConfigError, match=says):
            validate(raw)
