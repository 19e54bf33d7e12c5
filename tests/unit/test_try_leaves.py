"""Which leaves labmake try tries: those named (by name, folder or qna.yaml), else what
`labmake diff` reports as added or changed in git; and what it refuses before running
anything (no leaf changed, a leaf that does not validate)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labmake import cli
from labmake.cli.leaves import LeafError, changed_leaves, leaf_name, named_leaves

REPO = Path(__file__).resolve().parents[2]
SKILL = "compositional_skills/test/rhymes"
KNOWLEDGE = "knowledge/test/lighthouses"
NEW = "compositional_skills/test/antonyms"
ANTONYMS = """version: 2
created_by: labmake
task_description: Give the opposite of a word in one short sentence.
seed_examples:
  - question: What is the opposite of hot?
    answer: The opposite of hot is cold.
  - question: What is the opposite of tall?
    answer: The opposite of tall is short.
  - question: What is the opposite of fast?
    answer: The opposite of fast is slow.
  - question: What is the opposite of happy?
    answer: The opposite of happy is sad.
  - question: What is the opposite of open?
    answer: The opposite of open is closed.
"""


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "tests/data/taxonomy", root / "taxonomy")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    return root


def _add_leaf(root: Path) -> None:
    (root / "taxonomy" / NEW).mkdir(parents=True)
    (root / "taxonomy" / NEW / "qna.yaml").write_text(ANTONYMS)


def test_leaf_names_folders_and_files(project: Path):
    root = project / "taxonomy"
    assert leaf_name(SKILL, root) == SKILL
    assert leaf_name(str(root / SKILL), root) == SKILL
    assert leaf_name(str(root / SKILL / "qna.yaml"), root) == SKILL
    assert leaf_name(f"taxonomy/{SKILL}/", root) == SKILL
    assert named_leaves([SKILL, str(root / SKILL), KNOWLEDGE], root) == [SKILL, KNOWLEDGE]
    with pytest.raises(LeafError, match="not a leaf"):
        leaf_name("compositional_skills/test", root)


def test_leaves_added_or_changed_in_git(project: Path):
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "taxonomy")
    _add_leaf(project)  # untracked: a leaf being written counts before it is committed
    qna = project / "taxonomy" / SKILL / "qna.yaml"
    qna.write_text(qna.read_text().replace("Hat rhymes", "Bat rhymes"))
    label, changes = changed_leaves(project / "taxonomy", "HEAD", project / "build")
    assert {c.leaf: c.status for c in changes} == {NEW: "added", SKILL: "changed"}
    assert "HEAD" in label


def test_leaves_against_the_upstream_branch(tmp_path: Path, project: Path):
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "taxonomy")
    git(tmp_path, "clone", "-q", "--bare", str(project), "origin.git")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(tmp_path / "origin.git"), "clone")
    _add_leaf(clone)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "a new leaf, committed")
    label, changes = changed_leaves(clone / "taxonomy", None, clone / "build")
    assert [(c.leaf, c.status) for c in changes] == [(NEW, "added")]
    assert "@{upstream}" in label


def test_without_git_every_leaf_is_new_to_an_empty_build(project: Path):
    label, changes = changed_leaves(project / "taxonomy", None, project / "build")
    assert {c.leaf for c in changes} == {SKILL, KNOWLEDGE} and "last build" in label


def test_nothing_changed_is_said_and_nothing_runs(project: Path, capsys):
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "taxonomy")
    code = cli.main(["try", "--params", str(project / "params.yaml"), "--base", "HEAD"])
    assert code == 1
    assert "no leaf added or changed against HEAD" in capsys.readouterr().err
    assert not (project / "build").exists()


def test_a_leaf_that_does_not_validate_runs_nothing(project: Path, capsys):
    _add_leaf(project)
    qna = project / "taxonomy" / NEW / "qna.yaml"
    qna.write_text(qna.read_text().replace("seed_examples:", "seed_exmaples:"))
    code = cli.main(["try", NEW, "--params", str(project / "params.yaml")])
    captured = capsys.readouterr()
    assert code == 1
    assert "seed_exmaples" in captured.out  # validate's own report, with the line and the fix
    errors = [line for line in captured.err.splitlines() if line.startswith("labmake try:")]
    assert errors == [
        f"labmake try: {NEW}: not valid (see above); nothing was run. Fix the file and try "
        "again (labmake validate --strict-limits checks it alone)."
    ]
    assert not (project / "build").exists()


def test_an_unknown_leaf_is_a_usage_error(project: Path, capsys):
    code = cli.main(["try", "compositional_skills/nope", "--params", str(project / "params.yaml")])
    assert code == 2 and "not a leaf of the taxonomy" in capsys.readouterr().err
