"""``labmake diff``: the leaves added, changed or removed, against a git ref or the last build.

Against the last build, leaves compare by content (:mod:`labmake.cli.changes`). Against a git
ref, files compare: each changed path belongs to the deepest leaf folder that contains it, and
the working tree counts, untracked files included, so a leaf shows up before it is committed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath
from typing import TextIO

from labmake.cli.changes import (
    ADDED,
    CHANGED,
    REMOVED,
    UNCHANGED,
    LeafChange,
    change_line,
    diff_against_build,
    load_project,
)
from labmake.cli.exit_codes import EXIT_USAGE
from labmake.core import paths
from labmake.core.git import GitError, run_git
from labmake.taxonomy.findings import TaxonomyError
from labmake.taxonomy.scan import QNA, find_leaves


class DiffError(Exception):
    """The comparison cannot be made; the message says why and what to do."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff", help="leaves added, changed or removed against a git ref or the last build"
    )
    p.add_argument(
        "--base",
        default=None,
        help="git ref to compare with (default: the merge base with the upstream branch; "
        "the last build when there is none)",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--taxonomy", default=None, help="taxonomy root (default: params.yaml's)")
    p.add_argument("--build-dir", default=paths.BUILD, help="the last build's folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_diff(
        Path(args.params),
        base=args.base,
        taxonomy=Path(args.taxonomy) if args.taxonomy else None,
        build_dir=Path(args.build_dir),
        fmt=args.format,
    )


def run_diff(
    params_path: Path,
    *,
    base: str | None = None,
    taxonomy: Path | None = None,
    build_dir: Path = Path(paths.BUILD),
    fmt: str = "text",
    out: TextIO | None = None,
) -> int:
    """Print the leaves added, changed or removed; 0 on success, 2 on a usage error."""
    out = out or sys.stdout
    project = load_project(params_path, taxonomy, "diff")
    if project is None:
        return EXIT_USAGE
    cfg, root = project
    try:
        label, commit, changes, note = find_changes(root, base, build_dir)
    except (DiffError, TaxonomyError) as exc:
        print(f"labmake diff: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if note:
        print(f"labmake diff: {note}", file=sys.stderr)
    counts = {s: sum(c.status == s for c in changes) for s in (ADDED, CHANGED, REMOVED)}
    if fmt == "json":
        leaves = [{"leaf": c.leaf, "status": c.status, "reasons": list(c.reasons)} for c in changes]
        doc = {"base": label, "commit": commit, "leaves": leaves, "totals": counts}
        out.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
        return 0
    print(f"base: {label}", file=out)
    for change in changes:
        print(change_line(change, change.status), file=out)
    if not changes:
        print("no leaf changed", file=out)
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=out)
    return 0


def find_changes(
    root: Path, base: str | None, build_dir: Path
) -> tuple[str, str | None, list[LeafChange], str | None]:
    """What ``labmake diff`` reports: (what was compared with, its commit or None for the last
    build, the leaves added, changed or removed, a note to print or None). Raises
    :class:`DiffError` or :class:`TaxonomyError` with the message to show."""
    commit, note = _pick_base(root, base)
    if commit is None:
        label = f"last build ({build_dir})"
        changes = [c for c in diff_against_build(root, build_dir) if c.status != UNCHANGED]
    else:
        label = f"{base or '@{upstream}'} (merge base {commit[:12]})"
        changes = diff_against_git(root, commit)
    return label, commit, changes, note


def _pick_base(root: Path, base: str | None) -> tuple[str | None, str | None]:
    """(commit to diff with, or None for the last build; a note to print, or None)."""
    if not in_git_repo(root):
        if base is not None:
            raise DiffError(f"{root} is not in a git repository, so --base {base} cannot be used")
        return None, f"{root} is not in a git repository: comparing with the last build"
    if base is not None:
        return resolve_base(root, base), None
    merge = upstream_merge_base(root)
    if merge is None:
        return None, "no upstream branch to compare with: comparing with the last build"
    return merge, None


# ------------------------------------------------------------------------------ against git


def _git(root: Path, *args: str) -> str | None:
    """git's output in ``root``, None when git says no; :class:`DiffError` if git cannot run."""
    try:
        result = run_git(*args, repo=root)
    except GitError as exc:
        raise DiffError(str(exc)) from None
    return result.stdout if result.returncode == 0 else None


def in_git_repo(root: Path) -> bool:
    try:
        answer = _git(root, "rev-parse", "--is-inside-work-tree")
    except DiffError:
        return False
    return answer is not None and answer.strip() == "true"


def upstream_merge_base(root: Path) -> str | None:
    """``git merge-base HEAD @{upstream}``, or None when there is no upstream branch."""
    return (_git(root, "merge-base", "HEAD", "@{upstream}") or "").strip() or None


def resolve_base(root: Path, ref: str) -> str:
    """The commit to compare with: the merge base of ``ref`` and HEAD (as ``git diff ref...``)."""
    commit = (
        _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        or ""
    ).strip()
    if not commit:
        raise DiffError(
            f"git ref {ref!r} not found in {root}; name a branch, tag or commit "
            "(e.g. --base origin/main), or fetch it first"
        )
    # Unrelated histories (or no HEAD yet) have no merge base: compare with the ref itself.
    return (_git(root, "merge-base", commit, "HEAD") or "").strip() or commit


def changed_files(root: Path, base: str) -> list[tuple[str, str]]:
    """(status letter, path relative to ``root``) for files changed since ``base``.

    Compares with the working tree, not only HEAD, and counts untracked files as added, so a
    leaf being written shows up before it is committed.
    """
    try:
        result = run_git(
            "diff", "--name-status", "--no-renames", "--relative", "-z", base, "--", repo=root
        )
    except GitError as exc:
        raise DiffError(str(exc)) from None
    if result.returncode != 0:
        raise DiffError(f"`git diff {base}` failed: {result.stderr.strip()}")
    fields = result.stdout.split("\0")
    files = [(fields[i][:1], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    if untracked is not None:
        files += [("A", p) for p in untracked.split("\0") if p]
    return sorted(set(files), key=lambda f: (f[1], f[0]))


def owning_leaf(path: str, leaves: set[str]) -> str | None:
    """The deepest leaf folder that contains ``path``, or None when no leaf does."""
    for parent in PurePosixPath(path).parents:
        if parent.as_posix() in leaves:
            return parent.as_posix()
    return None


def leaves_from_files(files: list[tuple[str, str]], current: set[str]) -> list[LeafChange]:
    """Group changed files by leaf; a qna.yaml added or deleted makes the leaf added or removed."""
    # A deleted leaf is no folder any more, but its qna.yaml's path still names it.
    gone = {
        PurePosixPath(p).parent.as_posix()
        for s, p in files
        if s == "D" and PurePosixPath(p).name == QNA
    } - current
    leaves = current | gone
    by_leaf: dict[str, list[tuple[str, str]]] = {}
    for status, path in files:
        leaf = owning_leaf(path, leaves)
        if leaf is not None and leaf != ".":
            by_leaf.setdefault(leaf, []).append((status, path))
    changes = []
    for leaf in sorted(by_leaf):
        entries = by_leaf[leaf]
        qna = f"{leaf}/{QNA}"
        reasons = tuple(f"{s} {PurePosixPath(p).relative_to(leaf).as_posix()}" for s, p in entries)
        if leaf in gone:
            status = REMOVED
        elif ("A", qna) in entries:
            status = ADDED
        else:
            status = CHANGED
        changes.append(LeafChange(leaf, status, reasons))
    return changes


def diff_against_git(root: Path, base: str) -> list[LeafChange]:
    return leaves_from_files(changed_files(root, base), set(find_leaves(root)))
