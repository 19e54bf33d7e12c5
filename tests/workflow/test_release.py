"""`labmake release` and `labmake reproduce` against a local DVC remote, and reproducibility
from source.

A copy of the project becomes a git repository with the tiny params (tiny student, fake
teacher) and a DVC remote in a temp folder. `labmake release v1` builds it through `dvc repro`;
a later commit moves on; a fresh clone then runs `labmake reproduce v1` and must get the same
bytes with nothing left to build. A second fresh clone builds v1 from source with Snakemake
and must give byte-identical datasets, adapters, merged weights and GGUF files (every out;
evaluation timings aside).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import BIN, KNOWLEDGE, REPO, copy_project, dry_run, run

from labmake.cli.dvc_project import Out, lock_outs, verify_outs

pytestmark = pytest.mark.workflow

DVC_FILES = ("dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore")


def git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def labmake(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run(root, sys.executable, "-m", "labmake.cli", *args)


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    result = run(root, str(BIN / "dvc"), *args)
    assert result.returncode == 0, result.stderr
    return result


def clone(origin: Path, dst: Path) -> Path:
    git(origin.parent, "clone", "--quiet", str(origin), str(dst))
    git(dst, "config", "user.email", "test@example.com")
    git(dst, "config", "user.name", "labmake test")
    return dst


def out_files(root: Path) -> dict[str, bytes]:
    """Every file of every out that dvc.lock records, by project-relative path."""
    files = {}
    for out in lock_outs(root):
        path = root / out.path
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files.update({p.relative_to(root).as_posix(): p.read_bytes() for p in found})
    return files


TIMINGS = {"seconds", "tokens_per_s"}


def untimed(value):
    """A JSON value without its timing fields, which no two runs share."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def nothing_to_do(root: Path) -> bool:
    result = run(root, str(BIN / "snakemake"), "--profile", "profiles/local", "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    return "Nothing to be done" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path) -> Path:
    """origin/ released as v1 to remote/, then one more commit (a leaf edit) on top."""
    base = tmp_path_factory.mktemp("release")
    origin = copy_project(base / "origin", tiny_student_gguf)
    for name in DVC_FILES:
        (origin / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, origin / name)
    git(origin, "init", "--quiet", "--initial-branch=main")
    git(origin, "config", "user.email", "test@example.com")
    git(origin, "config", "user.name", "labmake test")
    dvc(origin, "remote", "add", "--default", "store", str(base / "remote"))
    git(origin, "add", "--all")
    git(origin, "commit", "--quiet", "-m", "a tiny labmake project")

    result = labmake(origin, "release", "v1")
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])

    qna = origin / "taxonomy" / KNOWLEDGE / "qna.yaml"
    qna.write_text(qna.read_text() + "# edited after the release\n")
    git(origin, "commit", "--quiet", "-am", "after v1")
    return base


@pytest.mark.slow
@pytest.mark.model
def test_release_commits_the_lock_tags_and_pushes(released: Path):
    origin = released / "origin"
    assert git(origin, "status", "--porcelain") == ""
    tagged = git(origin, "rev-parse", "v1^{commit}")
    assert git(origin, "log", "-1", "--format=%s", tagged) == "labmake release v1: dvc.lock"
    lock = git(origin, "show", "v1:dvc.lock")
    assert "build/model" in lock and "build/data" in lock
    assert any((released / "remote").rglob("*.dir"))  # folder listings pushed


@pytest.mark.slow
@pytest.mark.model
def test_release_refuses_a_dirty_tree_and_an_existing_tag(released: Path):
    origin = released / "origin"
    stray = origin / "taxonomy/knowledge/test/new_leaf_in_progress.txt"
    stray.write_text("not committed\n")
    try:
        result = labmake(origin, "release", "v2")
    finally:
        stray.unlink()
    assert result.returncode == 1
    assert "uncommitted changes" in result.stderr and "new_leaf_in_progress" in result.stderr
    assert "Traceback" not in result.stderr
    assert git(origin, "tag", "--list", "v2") == ""
    again = labmake(origin, "release", "v1")
    assert again.returncode == 1 and "already exists" in again.stderr


@pytest.mark.slow
@pytest.mark.model
def test_reproduce_restores_identical_artifacts_and_nothing_to_build(released: Path):
    origin = released / "origin"
    copy = clone(origin, released / "reproduced")
    (copy / "untracked.txt").write_text("x\n")
    dirty = labmake(copy, "reproduce", "v1")
    assert dirty.returncode == 1 and "uncommitted changes" in dirty.stderr
    (copy / "untracked.txt").unlink()

    result = labmake(copy, "reproduce", "v1")
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    assert git(copy, "rev-parse", "HEAD") == git(origin, "rev-parse", "v1^{commit}")
    # origin's build is v1's (the commit after it edited a leaf but built nothing).
    expected, got = out_files(origin), out_files(copy)
    assert got.keys() == expected.keys() and "build/model/model.Q4_K_M.gguf" in got
    assert [p for p in expected if got[p] != expected[p]] == []
    assert nothing_to_do(copy)
    assert dvc(copy, "status", "--json").stdout.strip() in ("{}", "")


@pytest.mark.slow
@pytest.mark.model
def test_reproduce_refuses_when_the_remote_lacks_artifacts(released: Path):
    partial = released / "partial-remote"
    shutil.copytree(released / "remote", partial)
    listing = sorted(partial.rglob("*.dir"))[0]  # one folder's listing: that out is lost
    listing.unlink()
    copy = clone(released / "origin", released / "partial")
    dvc(copy, "remote", "modify", "--local", "store", "url", str(partial))
    result = labmake(copy, "reproduce", "v1")
    assert result.returncode == 1
    assert "lacks artifacts of v1" in result.stderr and "Traceback" not in result.stderr
    assert not nothing_to_do(copy)  # nothing was marked as built


@pytest.mark.slow
@pytest.mark.model
def test_two_clean_builds_of_one_commit_are_byte_identical(released: Path):
    origin = released / "origin"
    fresh = clone(origin, released / "from-source")
    git(fresh, "checkout", "--quiet", "v1")
    result = run(fresh, str(BIN / "snakemake"), "--profile", "profiles/local")
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-6000:])
    expected, got = out_files(origin), out_files(fresh)
    assert got.keys() == expected.keys()
    # Evaluation measures speed (seconds, tokens/s) besides scores: compare it without those.
    # report.html shows those timings and the commit built, so it alone may differ.
    for path in [p for p in expected if p.startswith("build/eval/") and p.endswith(".json")]:
        assert untimed(json.loads(got.pop(path))) == untimed(json.loads(expected.pop(path))), path
    assert got.pop("build/report.html", b"") and expected.pop("build/report.html", b"")
    for must in (
        "build/data/knowledge.jsonl",
        "build/data/skills.jsonl",
        "build/checkpoints/knowledge/adapter_model.safetensors",
        "build/checkpoints/skills/adapter_model.safetensors",
        "build/model/hf/model.safetensors",
        "build/model/model.F16.gguf",
        "build/model/model.Q8_0.gguf",
        "build/model/README.md",  # the model card and the Modelfile: no dates, same bytes
        "build/model/Modelfile",
    ):
        assert must in got
    assert [p for p in expected if got[p] != expected[p]] == []


def test_verify_outs_rehashes_files_against_dvcs_records(tmp_path: Path):
    """Fast: a folder and a file added with `dvc add`, then damaged three ways."""
    git(tmp_path, "init", "--quiet")
    dvc(tmp_path, "init", "--quiet")
    (tmp_path / "out/sub").mkdir(parents=True)
    (tmp_path / "out/a.txt").write_text("alpha\n")
    (tmp_path / "out/sub/b.bin").write_bytes(bytes(range(256)))
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(100))
    dvc(tmp_path, "add", "--quiet", "out", "model.gguf")
    outs = []
    for name in ("out", "model.gguf"):
        record = yaml.safe_load((tmp_path / f"{name}.dvc").read_text())["outs"][0]
        outs.append(Out(record["path"], record["md5"]))
    cache = tmp_path / ".dvc/cache"
    assert verify_outs(tmp_path, outs, cache) == []

    (tmp_path / "out/a.txt").write_text("alpha!\n")
    (tmp_path / "out/sub/b.bin").unlink()
    (tmp_path / "out/extra.txt").write_text("not released\n")
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(99) + b"\x01")
    assert sorted(verify_outs(tmp_path, outs, cache)) == [
        "model.gguf: md5 differs from dvc.lock",
        "out/a.txt: md5 differs from dvc.lock",
        "out/extra.txt: not in the release",
        "out/sub/b.bin: missing",
    ]


def test_every_rule_output_is_a_dvc_out(tmp_path: Path):
    """Fast: an output that dvc.yaml does not list is never pushed, so `labmake reproduce`
    would leave Snakemake wanting to rebuild it."""
    student = tmp_path / "student.gguf"
    student.write_bytes(b"")  # a dry run never reads it
    root = copy_project(tmp_path / "project", student)
    outs = [
        next(iter(out)) if isinstance(out, dict) else out
        for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
        for out in stage["outs"]
    ]
    outputs = {path for job in dry_run(root) for path in job.output.split(", ") if path}
    assert "build/manifest.json" in outputs
    stray = [p for p in sorted(outputs) if not any(p == o or p.startswith(f"{o}/") for o in outs)]
    assert stray == [], f"add these to dvc.yaml's outs: {stray}"


def test_release_and_reproduce_refuse_outside_a_project_without_traceback(tmp_path: Path):
    for command in ("release", "reproduce"):
        result = labmake(tmp_path, command, "v1")
        assert result.returncode == 1
        assert "not in a git repository" in result.stderr and "Traceback" not in result.stderr
    git(tmp_path, "init", "--quiet")
    result = labmake(tmp_path, "release", "v1")
    assert result.returncode == 1 and "dvc.yaml" in result.stderr
