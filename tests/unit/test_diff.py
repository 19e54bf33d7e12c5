"""labmake diff / plan: leaf statuses against the last build and against git, and the estimate."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from labmake import cli
from labmake.cli import diff
from labmake.cli.changes import (
    Fingerprint,
    current_fingerprint,
    diff_against_build,
    recorded_fingerprint,
)
from labmake.core import artifacts
from labmake.core.config import SeedsConfig, load
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.limits import estimate_tokens
from labmake.taxonomy.scan import find_leaves
from labmake.taxonomy.seeds import leaf_record

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "taxonomy"
SKILL = "compositional_skills/test/rhymes"
KNOWLEDGE = "knowledge/test/lighthouses"
NEW = "compositional_skills/test/rhymes_two"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A temp taxonomy with a fake last build of every leaf, and params.yaml pointing at it."""
    root = tmp_path / "taxonomy"
    shutil.copytree(DATA, root)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["taxonomy"]["root"] = str(root)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    for leaf in find_leaves(root):
        record = leaf_record(load_leaf(root, leaf), SeedsConfig(), estimate_tokens)
        artifacts.write_json(tmp_path / "build" / "seeds" / f"{leaf}.json", record)
    return tmp_path


def _args(project: Path, *extra: str) -> list[str]:
    return [
        "--params",
        str(project / "params.yaml"),
        "--build-dir",
        str(project / "build"),
        "--format",
        "json",
        *extra,
    ]


def _json(capsys: pytest.CaptureFixture[str]) -> dict:
    return json.loads(capsys.readouterr().out)


def _edit_add_remove(root: Path) -> None:
    """Change the knowledge leaf's document, add a skill leaf, remove the original skill leaf."""
    doc = root / KNOWLEDGE / "lighthouses.md"
    doc.write_text(doc.read_text(encoding="utf-8") + "\nA new closing sentence.\n", "utf-8")
    shutil.copytree(root / SKILL, root / NEW)
    shutil.rmtree(root / SKILL)


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_unchanged_build_reports_nothing(project, capsys):
    assert cli.main(["diff", *_args(project)]) == 0
    doc = _json(capsys)
    assert doc["leaves"] == [] and doc["totals"] == {"added": 0, "changed": 0, "removed": 0}


def test_statuses_against_the_last_build(project, capsys):
    root = project / "taxonomy"
    _edit_add_remove(root)
    # Not a git repo: the diff falls back to the last build and says so on one line.
    assert cli.main(["diff", *_args(project)]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert "not in a git repository" in captured.err and len(captured.err.splitlines()) == 1
    statuses = {leaf["leaf"]: leaf["status"] for leaf in doc["leaves"]}
    assert statuses == {KNOWLEDGE: "changed", NEW: "added", SKILL: "removed"}
    changed = next(leaf for leaf in doc["leaves"] if leaf["leaf"] == KNOWLEDGE)
    assert changed["reasons"] == ["document lighthouses.md changed"]
    assert [leaf["leaf"] for leaf in doc["leaves"]] == sorted(statuses)


def test_qna_edit_and_new_document_are_reasons(project):
    root = project / "taxonomy"
    qna = root / SKILL / "qna.yaml"
    qna.write_text(qna.read_text(encoding="utf-8") + "# a comment\n", encoding="utf-8")
    extra = root / KNOWLEDGE / "more.md"
    extra.write_text("Fog signals sound when the light cannot be seen.\n", encoding="utf-8")
    changes = {c.leaf: c for c in diff_against_build(root, project / "build")}
    assert changes[SKILL].status == "changed" and changes[SKILL].reasons == ("qna.yaml changed",)
    # The knowledge leaf reads *.md, so a new markdown file beside it is a new document.
    assert changes[KNOWLEDGE].reasons == ("document more.md added",)


def test_a_pdf_document_is_compared_by_its_bytes(project, monkeypatch):
    from document_files import write_pdf

    monkeypatch.setenv("LABMAKE_CACHE", str(project / "cache"))
    root = project / "taxonomy"
    qna = root / KNOWLEDGE / "qna.yaml"
    qna.write_text(qna.read_text(encoding="utf-8").replace("'*.md'", "'*.pdf'"), "utf-8")
    (root / KNOWLEDGE / "lighthouses.md").unlink()
    write_pdf(root / KNOWLEDGE / "lighthouses.pdf")
    record = leaf_record(load_leaf(root, KNOWLEDGE), SeedsConfig(), estimate_tokens)
    artifacts.write_json(project / "build" / "seeds" / f"{KNOWLEDGE}.json", record)
    changes = {c.leaf: c for c in diff_against_build(root, project / "build")}
    assert changes[KNOWLEDGE].status == "unchanged"
    write_pdf(root / KNOWLEDGE / "lighthouses.pdf", title="Lighthouses and their keepers")
    changes = {c.leaf: c for c in diff_against_build(root, project / "build")}
    assert changes[KNOWLEDGE].reasons == ("document lighthouses.pdf changed",)


def test_fingerprint_hash_matches_between_build_and_tree(project):
    root = project / "taxonomy"
    for leaf in find_leaves(root):
        record = artifacts.read_json(project / "build" / "seeds" / f"{leaf}.json")
        assert recorded_fingerprint(record).sha256 == current_fingerprint(root, leaf).sha256
    a = Fingerprint("1" * 64, {"a.md": "2" * 64})
    assert a.sha256 != Fingerprint("1" * 64, {"b.md": "2" * 64}).sha256


def test_text_output_is_one_sorted_line_per_leaf(project, capsys):
    _edit_add_remove(project / "taxonomy")
    args = [a for a in _args(project) if a not in ("--format", "json")]
    assert cli.main(["diff", *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    leaf_lines = lines[1:-1]
    assert [line.split()[0] for line in leaf_lines] == ["removed", "added", "changed"]
    assert [line.split()[1] for line in leaf_lines] == sorted([NEW, SKILL, KNOWLEDGE])
    assert lines[-1] == "1 added, 1 changed, 1 removed"


def test_git_mode_maps_files_to_leaves(project, capsys):
    root = project / "taxonomy"
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "base")
    _edit_add_remove(root)
    (root / SKILL).mkdir()  # the folder survives without its qna.yaml: still a removed leaf
    (root / SKILL / "attribution.txt").write_text("kept\n", encoding="utf-8")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "edit")
    # An uncommitted edit and an untracked file count too.
    (root / KNOWLEDGE / "notes.txt").write_text("draft\n", encoding="utf-8")
    assert cli.main(["diff", *_args(project, "--base", "HEAD~1")]) == 0
    doc = _json(capsys)
    statuses = {leaf["leaf"]: leaf["status"] for leaf in doc["leaves"]}
    assert statuses == {KNOWLEDGE: "changed", NEW: "added", SKILL: "removed"}
    knowledge = next(leaf for leaf in doc["leaves"] if leaf["leaf"] == KNOWLEDGE)
    assert knowledge["reasons"] == ["M lighthouses.md", "A notes.txt"]
    assert doc["commit"] == _git(project, "rev-parse", "HEAD~1").strip()


def test_owning_leaf_is_the_deepest():
    leaves = {"a", "a/b"}
    assert diff.owning_leaf("a/b/c/x.md", leaves) == "a/b"
    assert diff.owning_leaf("a/x.md", leaves) == "a"
    assert diff.owning_leaf("z/x.md", leaves) is None


def test_git_without_upstream_falls_back_to_the_build(project, capsys):
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "base")
    _edit_add_remove(project / "taxonomy")
    assert cli.main(["diff", *_args(project)]) == 0
    captured = capsys.readouterr()
    assert "no upstream branch" in captured.err
    assert json.loads(captured.out)["base"].startswith("last build")


def test_missing_ref_is_a_usage_error(project, capsys):
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "base")
    assert cli.main(["diff", *_args(project, "--base", "no-such-branch")]) == 2
    err = capsys.readouterr().err
    assert "no-such-branch" in err and "not found" in err and "Traceback" not in err


def test_base_outside_git_is_a_usage_error(project, capsys):
    assert cli.main(["diff", *_args(project, "--base", "main")]) == 2
    assert "not in a git repository" in capsys.readouterr().err


def test_plan_prices_new_and_changed_leaves(project, capsys):
    _edit_add_remove(project / "taxonomy")
    (project / "build" / "seeds" / f"{KNOWLEDGE}.json").unlink()  # built never: new
    assert cli.main(["plan", *_args(project)]) == 0
    doc = _json(capsys)
    cfg = load(project / "params.yaml")
    rows = {row["leaf"]: row for row in doc["leaves"]}
    assert {leaf: row["status"] for leaf, row in rows.items()} == {
        KNOWLEDGE: "new",
        NEW: "new",
        SKILL: "removed",
    }
    from labmake.sdg import pipeline_for
    from labmake.sdg.generation import request_bound
    from labmake.sdg.multiple_choice import estimate_requests

    records = {
        leaf: leaf_record(load_leaf(project / "taxonomy", leaf), cfg.seeds, estimate_tokens)
        for leaf in (KNOWLEDGE, NEW)
    }
    bounds = {
        leaf: request_bound(r, cfg.generate, cfg.teacher, cfg.seed) for leaf, r in records.items()
    }
    mcs = {
        leaf: estimate_requests(r, cfg.evaluate.multiple_choice, cfg.teacher, cfg.seed)
        for leaf, r in records.items()
    }
    planned = {leaf: bounds[leaf][0] + mcs[leaf] for leaf in records}
    # A knowledge leaf's evaluation multiple choice is priced too: per (chunk, question), a
    # question, a judge verdict and the wrong options.
    mc = [r for r in planned[KNOWLEDGE] if r.prompt.endswith("<wrong>")]
    assert (
        len(mc)
        == len(records[KNOWLEDGE]["chunks"]) * cfg.evaluate.multiple_choice.questions_per_chunk
    )
    # The knowledge pipeline asks one Q/A per (chunk, sample), then judges each.
    first = [r for r in planned[KNOWLEDGE] if r.prompt.endswith("<question>")]
    assert len(first) == len(records[KNOWLEDGE]["chunks"]) * (
        cfg.generate.knowledge.samples_per_chunk + cfg.evaluate.multiple_choice.questions_per_chunk
    )
    # The yield floor: a leaf may run more rounds, up to max_requests (or its first round).
    for leaf in (KNOWLEDGE, NEW):
        most = bounds[leaf][1]
        floor = getattr(cfg.generate, pipeline_for(records[leaf], cfg.generate))
        assert most == max(len(bounds[leaf][0]), floor.max_requests)
        assert rows[leaf]["requests"] == most + len(mcs[leaf]) > 0
        assert rows[leaf]["first_round_requests"] == len(planned[leaf])
        assert rows[leaf]["prompt_tokens"] > 0
        assert rows[leaf]["tokens"] == rows[leaf]["prompt_tokens"] + rows[leaf]["completion_tokens"]
    assert doc["totals"]["requests"] == sum(r["requests"] for r in rows.values() if "requests" in r)
    assert "requests" not in rows[SKILL]
    assert doc["totals"]["tokens"] == sum(rows[leaf]["tokens"] for leaf in (KNOWLEDGE, NEW))


def test_plan_on_an_up_to_date_build_costs_nothing(project, capsys):
    args = [a for a in _args(project) if a not in ("--format", "json")]
    assert cli.main(["plan", *args]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:-1]] == ["unchanged", "unchanged"]
    assert out[-1].startswith("total: 0 leaves to generate, 0 teacher requests")


def test_broken_params_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: -1\n", encoding="utf-8")
    assert cli.main(["plan", "--params", str(bad)]) == 2
    assert cli.main(["diff", "--params", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_default_base_is_the_merge_base_with_upstream(project, capsys):
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "base")
    clone = project.parent / "clone"
    _git(project.parent, "clone", "-q", str(project), str(clone))
    root = clone / "taxonomy"
    qna = root / SKILL / "qna.yaml"
    qna.write_text(qna.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    _git(clone, "commit", "-q", "-am", "edit")
    args = ["--taxonomy", str(root), *_args(project)]
    assert cli.main(["diff", *args]) == 0
    doc = _json(capsys)
    assert doc["commit"] == _git(clone, "rev-parse", "origin/main").strip()
    assert doc["leaves"] == [{"leaf": SKILL, "status": "changed", "reasons": ["M qna.yaml"]}]
