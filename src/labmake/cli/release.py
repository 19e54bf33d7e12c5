"""``labmake release TAG`` and ``labmake reproduce TAG``: a model version as a git tag whose
artifacts live, by content, on a DVC remote.

release:   clean tree -> ``dvc repro`` (dvc.yaml runs Snakemake) -> commit dvc.lock -> ``dvc push``
           (artifacts, then the run-cache) -> check the remote has every artifact -> ``git tag``.
           The tag comes last, so a tag always means "its artifacts are on the remote"; a failed
           push leaves the commit untagged, and running the same command again finishes it.
reproduce: clean tree -> ``git checkout TAG`` (detached; nothing is lost, the tree is clean)
           -> ``dvc pull`` -> ``dvc status`` clean and every out re-hashed against dvc.lock ->
           ``snakemake --touch --forceall``, so that Snakemake, which has no record of files it
           did not write, takes the pulled artifacts as up to date and a following build does
           nothing (FIELD-NOTES; ``--forceall`` records every job, so later params edits still
           trigger their rules).

Every step is a subprocess (git, dvc, snakemake) run in the project root; a failure is a
:class:`ReleaseError` whose message says what went wrong and what to do, never a traceback.
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

from labmake.core import toolchain

DVC_YAML = "dvc.yaml"
DVC_LOCK = "dvc.lock"
DEFAULT_PROFILE = "profiles/local"
# Files a build may change in git's view: the lock, and .gitignore files DVC writes for outs.
BUILD_BOOKKEEPING = (DVC_LOCK, ".gitignore")
CHUNK = 1 << 20
Log = Callable[[str], None]


def _stderr(message: str) -> None:
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
    if check and result.returncode != 0:
        name = " ".join([Path(command[0]).name, *command[1:]])
        raise ReleaseError(f"`{name}` failed (exit {result.returncode}){_tail(result)}")
    return result


def _tail(result: subprocess.CompletedProcess[str], lines: int = 15) -> str:
    text = "\n".join(t for t in (result.stdout, result.stderr) if t).strip()
    if not text:
        return ""
    return ":\n  " + "\n  ".join(text.splitlines()[-lines:])


def git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(root, ["git", *args], check=check)


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


def check_tag_name(root: Path, tag: str) -> None:
    if git(root, "check-ref-format", f"refs/tags/{tag}", check=False).returncode != 0:
        raise ReleaseError(f"{tag!r} is not a valid git tag name")


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


def _dir_listing(cache: Path, md5: str) -> list[dict[str, Any]]:
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
        expected = {e["relpath"]: e["md5"] for e in _dir_listing(cache, out.md5)}
        present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
        for rel in sorted(set(expected) - present):
            problems.append(f"{out.path}/{rel}: missing")
        for rel in sorted(present - set(expected)):
            problems.append(f"{out.path}/{rel}: not in the release")
        for rel in sorted(set(expected) & present):
            if md5_file(path / rel) != expected[rel]:
                problems.append(f"{out.path}/{rel}: md5 differs from dvc.lock")
    return problems


# ---------------------------------------------------------------------------- commands


def release(root: Path, tag: str, *, log: Log = _stderr) -> str:
    """Build, commit dvc.lock, push artifacts and run-cache, tag; returns the tagged commit."""
    check_project(root)
    check_tag_name(root, tag)
    if tag_commit(root, tag) is not None:
        raise ReleaseError(f"tag {tag} already exists: pick a new name (releases are immutable)")
    require_clean(root, "release")
    remote = default_remote(root)

    log("labmake release: building with `dvc repro` (Snakemake inside; only what changed)")
    built = dvc(root, "repro", capture=False, check=False)
    if built.returncode != 0:
        raise ReleaseError("`dvc repro` failed (see its output above); fix it and run this again")

    changed = uncommitted(root)
    unexpected = [p for p in changed if Path(p).name not in BUILD_BOOKKEEPING]
    if unexpected:
        raise ReleaseError(
            "the build changed files that git tracks besides dvc.lock: "
            + ", ".join(unexpected[:10])
            + "; commit what belongs to the release and run this again"
        )
    if changed:
        git(root, "add", "--", *changed)
        git(root, "commit", "--quiet", "-m", f"labmake release {tag}: dvc.lock", "--", *changed)

    log(f"labmake release: pushing artifacts to DVC remote {remote!r}")
    dvc(root, "push", capture=False)
    dvc(root, "push", "--run-cache")
    missing = json.loads(dvc(root, "status", "--cloud", "--json").stdout or "{}")
    if missing:
        raise ReleaseError(
            f"after `dvc push`, remote {remote!r} still lacks {len(missing)} files "
            f"(e.g. {sorted(missing)[0]}); check the remote and run this again"
        )

    git(root, "tag", "-a", tag, "-m", f"labmake release {tag}")
    commit = tag_commit(root, tag) or ""
    log(
        f"labmake release: tagged {tag} at {commit[:12]}; artifacts are on {remote!r}.\n"
        f"  share it: git push origin HEAD {tag}\n"
        f"  get it back anywhere: labmake reproduce {tag}"
    )
    return commit


def _pull_failure(result: subprocess.CompletedProcess[str], remote: str, tag: str) -> str:
    text = (result.stdout or "") + (result.stderr or "")
    lines = text.splitlines()
    targets: list[str] = []
    if "Checkout failed for following targets:" in text:
        start = next(i for i, line in enumerate(lines) if "Checkout failed for following" in line)
        for line in lines[start + 1 :]:
            if not line.strip() or line.startswith(("Is your cache", "<https")):
                break
            targets.append(line.strip())
    if targets or "do not exist neither locally nor on remote" in text:
        what = ", ".join(targets) or "some artifacts"
        return (
            f"DVC remote {remote!r} lacks artifacts of {tag}: {what}. Run `labmake release` "
            "(or `dvc push`) where the release was built, or point this clone at the right "
            "remote (`dvc remote modify --local ...`). The build folder now holds a partial "
            f"copy; nothing was marked as built. DVC said{_tail(result, 8)}"
        )
    return f"`dvc pull` failed (exit {result.returncode}){_tail(result)}"


def lock_at(root: Path, ref: str) -> toolchain.Lock | None:
    """The toolchain lock as committed at ``ref`` (None when that commit has none)."""
    shown = git(root, "show", f"{ref}:{toolchain.LOCK}", check=False)
    if shown.returncode != 0:
        return None
    torch = git(root, "show", f"{ref}:{toolchain.TORCH_PIN}", check=False)
    return toolchain.Lock(
        root / toolchain.LOCK, shown.stdout, torch.stdout if torch.returncode == 0 else None
    )


def check_toolchain(root: Path, tag: str, *, allow_mismatch: bool, log: Log) -> None:
    """The running environment against ``tag``'s lock, before anything is pulled or built."""
    lock = lock_at(root, tag)
    if lock is None:
        log(f"labmake reproduce: {tag} has no {toolchain.LOCK}; its toolchain cannot be checked")
        return
    try:
        differences = lock.differences()
    except toolchain.ToolchainError as exc:
        raise ReleaseError(f"{tag}'s {exc}") from None
    if not differences:
        return
    shown = "\n  ".join(d.describe() for d in differences[:25])
    more = f"\n  ... and {len(differences) - 25} more" if len(differences) > 25 else ""
    if not allow_mismatch:
        raise ReleaseError(
            f"this environment is not {tag}'s toolchain ({toolchain.LOCK} at {tag}):\n  {shown}"
            f"{more}\ninstall it first: `git checkout {tag} && rm -rf .venv && make setup`, then "
            f"run `.venv/bin/labmake reproduce {tag}`; or pass --allow-toolchain-mismatch to go "
            "on anyway (the pulled artifacts are the release's bytes, but anything rebuilt here "
            "may differ from them)"
        )
    log(
        f"labmake reproduce: warning: this environment is not {tag}'s toolchain:\n  {shown}{more}"
        "\n  going on (--allow-toolchain-mismatch): anything rebuilt here may differ in bytes"
    )


def reproduce(
    root: Path,
    tag: str,
    *,
    profile: str = DEFAULT_PROFILE,
    allow_toolchain_mismatch: bool = False,
    log: Log = _stderr,
) -> int:
    """Check the toolchain against ``tag``'s lock, check out ``tag``, pull its artifacts, verify
    them, mark them built; returns how many files were verified."""
    check_project(root)
    require_clean(root, "reproduce")
    commit = tag_commit(root, tag)
    if commit is None:
        raise ReleaseError(
            f"no tag {tag} in this repository: `git fetch --tags`, or check the name"
        )
    check_toolchain(root, tag, allow_mismatch=allow_toolchain_mismatch, log=log)
    if head_commit(root) != commit:
        log(f"labmake reproduce: git checkout {tag} (detached; go back with `git switch -`)")
        git(root, "checkout", "--quiet", tag)
    remote = default_remote(root)

    log(f"labmake reproduce: pulling {tag}'s artifacts from DVC remote {remote!r}")
    # --force: the tag's artifacts replace whatever build/ holds (that is the point).
    pulled = dvc(root, "pull", "--force", check=False)
    if pulled.returncode != 0:
        raise ReleaseError(_pull_failure(pulled, remote, tag))

    status = json.loads(dvc(root, "status", "--json").stdout or "{}")
    if status:
        raise ReleaseError(
            f"after `dvc pull`, `dvc status` is not clean: {json.dumps(status)[:500]}"
        )
    outs, cache = lock_outs(root), cache_dir(root)
    problems = verify_outs(root, outs, cache)
    if problems:
        raise ReleaseError(
            "pulled artifacts do not match dvc.lock:\n  " + "\n  ".join(problems[:20])
        )
    files = sum(len(_dir_listing(cache, o.md5)) if o.md5.endswith(".dir") else 1 for o in outs)

    # Only now, with every artifact verified and nothing edited since the pull (FIELD-NOTES).
    snakemake = [tool("snakemake"), "--profile", profile]
    run(root, [*snakemake, "--touch", "--forceall"])
    dry = run(root, [*snakemake, "-n"])
    text = dry.stdout + dry.stderr
    if "Nothing to be done" not in text:
        # Typically an output of a rule that dvc.yaml does not list as an out (never pulled).
        reasons = sorted({line.strip() for line in text.splitlines() if "reason:" in line})
        raise ReleaseError(
            "the artifacts are verified, but Snakemake still plans jobs after --touch (is "
            "every rule output listed in dvc.yaml's outs?):\n  "
            + "\n  ".join(reasons[:8])
            + f"\nrun `snakemake --profile {profile} -n` for the whole plan"
        )
    log(
        f"labmake reproduce: {tag} restored, {files} files verified against dvc.lock; "
        "`labmake build` has nothing to do"
    )
    return files


def run_release(tag: str, root: Path | None = None) -> int:
    try:
        release(Path.cwd() if root is None else root, tag)
    except ReleaseError as exc:
        print(f"labmake release: error: {exc}", file=sys.stderr)
        return 1
    return 0


def run_reproduce(
    tag: str,
    root: Path | None = None,
    profile: str = DEFAULT_PROFILE,
    allow_toolchain_mismatch: bool = False,
) -> int:
    try:
        reproduce(
            Path.cwd() if root is None else root,
            tag,
            profile=profile,
            allow_toolchain_mismatch=allow_toolchain_mismatch,
        )
    except ReleaseError as exc:
        print(f"labmake reproduce: error: {exc}", file=sys.stderr)
        return 1
    return 0
