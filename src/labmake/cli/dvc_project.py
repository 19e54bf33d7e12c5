"""The project as ``release`` and ``reproduce`` see it: a git work tree whose build artifacts
live, by content, in DVC.

Every step is a subprocess (git, dvc, snakemake) run in the project root; a failure is a
:class:`ReleaseError` whose message says what went wrong and what to do, never a traceback.
The verification here re-hashes artifacts itself rather than trusting ``dvc status`` alone, so
a release is known to hold exactly the bytes dvc.lock names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labmake.core.git import GitError, run_git

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
DEFAULT_PROFILE = "profiles/local"
CHUNK = 1 << 20
Log = Callable[[str], None]


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr)


class ReleaseError(Exception):
    """A release or reproduce step failed; the message says why and what to do."""


# ------------------------------------------------------------------------ running tools


def tool(name: str) -> str:
    """The tool installed beside this interpreter (the venv's dvc/snakemake), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise ReleaseError(f"`{name}` is not installed; install labmake's dependencies")
    return found


def tool_env() -> dict[str, str]:
    """The environment for dvc and snakemake: dvc.yaml's command (``snakemake ...``) must find
    the snakemake of this interpreter, so its folder goes first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run(
    root: Path, command: Sequence[str], *, capture: bool = True, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in ``root``; with ``check``, a non-zero exit is a :class:`ReleaseError`
    carrying the command's last lines of output."""
    try:
        result = subprocess.run(
            list(command),
            cwd=root,
            env=tool_env(),
            capture_output=capture,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        raise ReleaseError(f"`{command[0]}` is not installed") from None
    if check:
        _check_exit(command, result)
    return result


def _check_exit(command: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        name = " ".join([Path(command[0]).name, *command[1:]])
        raise ReleaseError(f"`{name}` failed (exit {result.returncode}){tail(result)}")


def tail(result: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    """The last lines a command printed, indented under a colon ("" when it printed nothing)."""
    text = "\n".join(t for t in (result.stdout, result.stderr) if t).strip()
    if not text:
        return ""
    return ":\n  " + "\n  ".join(text.splitlines()[-lines:])


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """git in ``root``, with no time limit: commits and checkouts run the project's hooks."""
    try:
        result = run_git(*args, cwd=root, env=tool_env(), timeout=None)
    except GitError as exc:
        raise ReleaseError(str(exc)) from None
    if check:
        _check_exit(["git", *args], result)
    return result


def dvc(
    root: Path, *args: str, capture: bool = True, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(root, [tool("dvc"), *args], capture=capture, check=check)


# ---------------------------------------------------------------------------- checks


def check_project(root: Path) -> None:
    """``root`` is a git work tree's top with a dvc.yaml."""
    result = git(root, "rev-parse", "--show-toplevel", check=False)
    if result.returncode != 0:
        raise ReleaseError(f"{root} is not in a git repository: run `git init` and commit first")
    if Path(result.stdout.strip()).resolve() != root.resolve():
        raise ReleaseError(f"run this at the repository's top folder, {result.stdout.strip()}")
    if not (root / DVC_YAML).is_file():
        raise ReleaseError(f"{root / DVC_YAML} not found: this is not a labmake project")


def uncommitted(root: Path) -> list[str]:
    """Changed, staged and untracked (not ignored) paths; [] when the tree is clean."""
    out = git(root, "status", "--porcelain", "--untracked-files=all").stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def require_clean(root: Path, command: str) -> None:
    dirty = uncommitted(root)
    if dirty:
        shown = "\n  ".join(dirty[:10]) + ("\n  ..." if len(dirty) > 10 else "")
        raise ReleaseError(
            f"the git tree has uncommitted changes, so `labmake {command}` would not match any "
            f"commit:\n  {shown}\ncommit or stash them (untracked files count: a new leaf is "
            "an input), then run it again"
        )


def _commit_of(root: Path, ref: str) -> str | None:
    result = git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    return (result.stdout.strip() or None) if result.returncode == 0 else None


def tag_commit(root: Path, tag: str) -> str | None:
    return _commit_of(root, f"refs/tags/{tag}")


def head_commit(root: Path) -> str | None:
    return _commit_of(root, "HEAD")


def default_remote(root: Path) -> str:
    result = dvc(root, "remote", "default", check=False)
    name = result.stdout.strip()
    if result.returncode != 0 or not name:
        raise ReleaseError(
            "no default DVC remote to push to: add one, e.g. "
            "`dvc remote add -d store /path/to/storage` (or s3://..., ssh://...; see the "
            "README), commit .dvc/config, then run this again"
        )
    return name


# ------------------------------------------------------------------------ verification


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Out:
    path: str
    md5: str  # a file's md5, or "<md5>.dir" for a folder (the md5 of DVC's listing object)


def lock_outs(root: Path) -> list[Out]:
    """Every out that dvc.lock records, with its hash."""
    path = root / DVC_LOCK
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ReleaseError(f"{path} not found: this commit was not released") from None
    except yaml.YAMLError as exc:
        raise ReleaseError(f"{path} is not valid YAML ({exc})") from None
    outs = []
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("hash", "md5") != "md5" or "md5" not in out:
                raise ReleaseError(f"{path}: {out.get('path')}: no md5 recorded; run `dvc repro`")
            outs.append(Out(out["path"], out["md5"]))
    if not outs:
        raise ReleaseError(f"{path} records no outputs: run `labmake release` to build one")
    return outs


def cache_dir(root: Path) -> Path:
    path = Path(dvc(root, "cache", "dir").stdout.strip())
    return path if path.is_absolute() else root / path


def dir_listing(cache: Path, md5: str) -> list[dict[str, Any]]:
    """DVC's listing of a folder out (relpath + md5 per file), checked against its own hash."""
    bare = md5.removesuffix(".dir")
    obj = cache / "files" / "md5" / bare[:2] / f"{bare[2:]}.dir"
    try:
        raw = obj.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{obj}: DVC's listing of a folder is not in the cache") from None
    if hashlib.md5(raw, usedforsecurity=False).hexdigest() != bare:
        raise ReleaseError(f"{obj}: the cache object is corrupt (its md5 differs from its name)")
    return json.loads(raw)


def verify_outs(root: Path, outs: Sequence[Out], cache: Path) -> list[str]:
    """Re-hash every out in the workspace against dvc.lock; one line per mismatch."""
    problems = []
    for out in outs:
        path = root / out.path
        if not out.md5.endswith(".dir"):
            if not path.is_file():
                problems.append(f"{out.path}: missing")
            elif md5_file(path) != out.md5:
                problems.append(f"{out.path}: md5 differs from dvc.lock")
            continue
        if not path.is_dir():
            problems.append(f"{out.path}/: missing")
            continue
        problems += _folder_problems(out, path, cache)
    return problems


def _folder_problems(out: Out, path: Path, cache: Path) -> list[str]:
    """A folder out's files against DVC's listing: missing, extra, or with other bytes."""
    problems = []
    expected = {e["relpath"]: e["md5"] for e in dir_listing(cache, out.md5)}
    present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    for rel in sorted(set(expected) - present):
        problems.append(f"{out.path}/{rel}: missing")
    for rel in sorted(present - set(expected)):
        problems.append(f"{out.path}/{rel}: not in the release")
    for rel in sorted(set(expected) & present):
        if md5_file(path / rel) != expected[rel]:
            problems.append(f"{out.path}/{rel}: md5 differs from dvc.lock")
    return problems
