"""``labmake reproduce TAG``: a released model version back, byte for byte, from the DVC
remote.

clean tree -> ``git checkout TAG`` (detached; nothing is lost, the tree is clean) -> ``dvc
pull`` -> ``dvc status`` clean and every out re-hashed against dvc.lock -> ``snakemake --touch
--forceall``. Snakemake keeps no record of files it did not write, so without the touch it
would rebuild the pulled artifacts; ``--forceall`` records every job, so that a later params
edit still triggers exactly the rules that read it, and a following build does nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from labmake.cli.dvc_project import (
    DEFAULT_PROFILE,
    Log,
    ReleaseError,
    cache_dir,
    check_project,
    default_remote,
    dir_listing,
    dvc,
    git,
    head_commit,
    lock_outs,
    require_clean,
    run,
    stderr_log,
    tag_commit,
    tail,
    tool,
    verify_outs,
)

if TYPE_CHECKING:  # packaging and importlib.metadata load only when reproduce runs
    from labmake.core import toolchain


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reproduce",
        help="check out a released tag, pull and verify its artifacts, mark them built",
    )
    p.add_argument("tag", help="a tag made by labmake release")
    p.add_argument("--profile", default=DEFAULT_PROFILE, help="snakemake profile to mark with")
    p.add_argument(
        "--allow-toolchain-mismatch",
        action="store_true",
        help="go on when the installed packages differ from the tag's requirements.lock",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_reproduce(
        args.tag, profile=args.profile, allow_toolchain_mismatch=args.allow_toolchain_mismatch
    )


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


def reproduce(
    root: Path,
    tag: str,
    *,
    profile: str = DEFAULT_PROFILE,
    allow_toolchain_mismatch: bool = False,
    log: Log = stderr_log,
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
    _pull(root, tag, log)
    files = _verify(root)
    # Only now, with every artifact verified and nothing edited since the pull.
    _mark_built(root, profile)
    log(
        f"labmake reproduce: {tag} restored, {files} files verified against dvc.lock; "
        "`labmake build` has nothing to do"
    )
    return files


def lock_at(root: Path, ref: str) -> toolchain.Lock | None:
    """The toolchain lock as committed at ``ref`` (None when that commit has none)."""
    from labmake.core import toolchain

    shown = git(root, "show", f"{ref}:{toolchain.LOCK}", check=False)
    if shown.returncode != 0:
        return None
    torch = git(root, "show", f"{ref}:{toolchain.TORCH_PIN}", check=False)
    return toolchain.Lock(
        root / toolchain.LOCK, shown.stdout, torch.stdout if torch.returncode == 0 else None
    )


def check_toolchain(root: Path, tag: str, *, allow_mismatch: bool, log: Log) -> None:
    """The running environment against ``tag``'s lock, before anything is pulled or built."""
    from labmake.core import toolchain

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


def _pull(root: Path, tag: str, log: Log) -> None:
    remote = default_remote(root)
    log(f"labmake reproduce: pulling {tag}'s artifacts from DVC remote {remote!r}")
    # --force: the tag's artifacts replace whatever build/ holds (that is the point).
    pulled = dvc(root, "pull", "--force", check=False)
    if pulled.returncode != 0:
        raise ReleaseError(_pull_failure(pulled, remote, tag))


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
            f"copy; nothing was marked as built. DVC said{tail(result, 8)}"
        )
    return f"`dvc pull` failed (exit {result.returncode}){tail(result)}"


def _verify(root: Path) -> int:
    """``dvc status`` clean and every out re-hashed; returns how many files were checked."""
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
    return sum(len(dir_listing(cache, o.md5)) if o.md5.endswith(".dir") else 1 for o in outs)


def _mark_built(root: Path, profile: str) -> None:
    """``snakemake --touch --forceall``, then a dry run that must find nothing to do."""
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
