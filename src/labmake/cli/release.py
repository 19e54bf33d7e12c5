"""``labmake release TAG``: a model version as a git tag whose artifacts live, by content, on a
DVC remote.

clean tree -> ``dvc repro`` (dvc.yaml runs Snakemake) -> commit dvc.lock -> ``dvc push``
(artifacts, then the run-cache) -> check the remote has every artifact -> ``git tag``. The tag
comes last, so a tag always means "its artifacts are on the remote"; a failed push leaves the
commit untagged, and running the same command again finishes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from labmake.cli.dvc_project import (
    DVC_LOCK,
    Log,
    ReleaseError,
    check_project,
    default_remote,
    dvc,
    git,
    require_clean,
    stderr_log,
    tag_commit,
    uncommitted,
)

# Files a build may change in git's view: the lock, and .gitignore files DVC writes for outs.
BUILD_BOOKKEEPING = (DVC_LOCK, ".gitignore")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "release",
        help="build with dvc repro, commit dvc.lock, push the artifacts to the DVC remote, tag",
    )
    p.add_argument("tag", help="the git tag to create, e.g. v1")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_release(args.tag)


def run_release(tag: str, root: Path | None = None) -> int:
    try:
        release(Path.cwd() if root is None else root, tag)
    except ReleaseError as exc:
        print(f"labmake release: error: {exc}", file=sys.stderr)
        return 1
    return 0


def check_tag_name(root: Path, tag: str) -> None:
    if git(root, "check-ref-format", f"refs/tags/{tag}", check=False).returncode != 0:
        raise ReleaseError(f"{tag!r} is not a valid git tag name")


def release(root: Path, tag: str, *, log: Log = stderr_log) -> str:
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
    _commit_lock(root, tag)

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


def _commit_lock(root: Path, tag: str) -> None:
    """Commit what the build changed, which must be only dvc.lock and DVC's .gitignore files."""
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
