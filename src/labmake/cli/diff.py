"""``labmake diff`` and ``labmake plan``: which leaves changed, and what a build would redo.

Two baselines. The last build needs no git: ``build/seeds/{leaf}.json`` records the sha256 of
the leaf's qna.yaml and of each document it read, so a leaf is new (no seeds file), removed (a
seeds file without a leaf folder) or changed (a different hash). A git ref compares files: each
changed path belongs to the deepest leaf folder that contains it. ``plan`` prices the new and
changed leaves in teacher requests and tokens, without loading any model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from labmake.core import artifacts, paths
from labmake.core.config import BuildConfig, ConfigError, load
from labmake.taxonomy.check import QNA, TaxonomyError, find_leaves, load_leaf
from labmake.taxonomy.limits import estimate_tokens

EXIT_USAGE = 2
GIT_TIMEOUT_S = 30

ADDED, CHANGED, REMOVED, UNCHANGED = "added", "changed", "removed", "unchanged"
ATTRIBUTION = "attribution.txt"
# plan speaks of what a build does with a leaf, so a leaf it never built is "new".
PLAN_WORDS = {ADDED: "new", CHANGED: "changed", REMOVED: "removed", UNCHANGED: "unchanged"}


class DiffError(Exception):
    """The comparison cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class LeafChange:
    leaf: str
    status: str  # added | changed | removed | unchanged
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fingerprint:
    """What the build read from a leaf: qna.yaml's hash and each document's, by name."""

    qna_sha256: str
    documents: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        """One content hash for the leaf: sha256 over (name, hash) of its files, sorted by name."""
        files = {QNA: self.qna_sha256, **self.documents}
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(f"{name}\0{files[name]}\n".encode())
        return digest.hexdigest()


# ------------------------------------------------------------------------ against the build


def seeds_path(build_dir: Path, leaf: str) -> Path:
    return Path(build_dir) / PurePosixPath(paths.seeds(leaf)).relative_to(paths.BUILD)


def built_leaves(build_dir: Path) -> list[str]:
    """The leaves the last build wrote seeds for, sorted (temp files of a write are skipped)."""
    base = seeds_path(build_dir, "x").parent
    if not base.is_dir():
        return []
    return sorted(
        p.relative_to(base).with_suffix("").as_posix()
        for p in base.rglob("*.json")
        if not p.name.startswith(".")
    )


def recorded_fingerprint(record: dict[str, Any]) -> Fingerprint:
    # Documents from a git repository are pinned by the commit in qna.yaml: its hash covers them.
    local = [d for d in record.get("documents", []) if "repo" not in d]
    return Fingerprint(record["qna_sha256"], {d["name"]: d["sha256"] for d in local})


def current_fingerprint(root: Path, leaf: str) -> Fingerprint:
    """The leaf as the seeds stage would hash it now; :class:`TaxonomyError` if it is invalid."""
    loaded = load_leaf(root, leaf)
    # Hash the decoded text as seeds.leaf_record does, so an unchanged file compares equal.
    docs = {
        doc.name: hashlib.sha256(doc.read_text(encoding="utf-8").encode("utf-8")).hexdigest()
        for doc in loaded.documents
    }
    return Fingerprint(hashlib.sha256(loaded.qna_path.read_bytes()).hexdigest(), docs)


def compare_fingerprints(old: Fingerprint, new: Fingerprint) -> tuple[str, ...]:
    """Why ``new`` differs from ``old``, one reason per file; empty when they are the same."""
    reasons = []
    if old.qna_sha256 != new.qna_sha256:
        reasons.append(f"{QNA} changed")
    for name in sorted(set(old.documents) | set(new.documents)):
        if name not in new.documents:
            reasons.append(f"document {name} removed")
        elif name not in old.documents:
            reasons.append(f"document {name} added")
        elif old.documents[name] != new.documents[name]:
            reasons.append(f"document {name} changed")
    return tuple(reasons)


def same_bytes(root: Path, leaf: str, old: Fingerprint) -> bool:
    """True when the leaf's files are, byte for byte, what the last build read, so nothing needs
    parsing (a no-op plan of 1,000 leaves spent 95% of its time validating unchanged ones).
    False means "look closer" (:func:`current_fingerprint`), never "changed"."""
    folder = root / leaf
    if any("/" in name for name in old.documents):
        return False  # documents from a repository or a subfolder: the full check knows them
    try:
        if hashlib.sha256((folder / QNA).read_bytes()).hexdigest() != old.qna_sha256:
            return False
        for name, digest in old.documents.items():
            if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
                return False
        entries = list(folder.iterdir())
    except OSError:
        return False
    # A new file beside qna.yaml may match its document patterns; a new subfolder that is not
    # a leaf may hold documents too. Either one: take the full check.
    known = {QNA, ATTRIBUTION, *old.documents}
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and not (entry / QNA).is_file():
            return False
        if entry.is_file() and entry.name not in known:
            return False
    return True


def diff_against_build(root: Path, build_dir: Path) -> list[LeafChange]:
    """Every leaf of the taxonomy or of the last build, with its status against that build."""
    current = set(find_leaves(root))
    built = set(built_leaves(build_dir))
    changes = []
    for leaf in sorted(current | built):
        if leaf not in current:
            changes.append(LeafChange(leaf, REMOVED, ("no leaf folder with a qna.yaml",)))
            continue
        if leaf not in built:
            changes.append(LeafChange(leaf, ADDED, ("not in the last build",)))
            continue
        path = seeds_path(build_dir, leaf)
        try:
            old = recorded_fingerprint(artifacts.read_json(path))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            changes.append(LeafChange(leaf, CHANGED, (f"{path} unreadable ({exc})",)))
            continue
        if same_bytes(root, leaf, old):
            changes.append(LeafChange(leaf, UNCHANGED))
            continue
        try:
            new = current_fingerprint(root, leaf)
        except (TaxonomyError, OSError, UnicodeDecodeError):
            changes.append(LeafChange(leaf, CHANGED, ("invalid now: run labmake validate",)))
            continue
        reasons = compare_fingerprints(old, new)
        changes.append(LeafChange(leaf, CHANGED if reasons else UNCHANGED, reasons))
    return changes


# ------------------------------------------------------------------------------ against git


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run git in ``root``; :class:`DiffError` if it cannot be run or does not answer in time."""
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise DiffError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise DiffError(f"`git {' '.join(args)}` did not finish in {GIT_TIMEOUT_S} s") from None


def in_git_repo(root: Path) -> bool:
    try:
        result = _git(root, "rev-parse", "--is-inside-work-tree")
    except DiffError:
        return False
    return result.returncode == 0 and result.stdout.strip() == "true"


def upstream_merge_base(root: Path) -> str | None:
    """``git merge-base HEAD @{upstream}``, or None when there is no upstream branch."""
    result = _git(root, "merge-base", "HEAD", "@{upstream}")
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


def resolve_base(root: Path, ref: str) -> str:
    """The commit to compare with: the merge base of ``ref`` and HEAD (as ``git diff ref...``)."""
    result = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if result.returncode != 0 or not result.stdout.strip():
        raise DiffError(
            f"git ref {ref!r} not found in {root}; name a branch, tag or commit "
            "(e.g. --base origin/main), or fetch it first"
        )
    commit = result.stdout.strip()
    merge = _git(root, "merge-base", commit, "HEAD")
    # Unrelated histories (or no HEAD yet) have no merge base: compare with the ref itself.
    return merge.stdout.strip() if merge.returncode == 0 and merge.stdout.strip() else commit


def changed_files(root: Path, base: str) -> list[tuple[str, str]]:
    """(status letter, path relative to ``root``) for files changed since ``base``.

    Compares with the working tree, not only HEAD, and counts untracked files as added, so a
    leaf being written shows up before it is committed.
    """
    result = _git(root, "diff", "--name-status", "--no-renames", "--relative", "-z", base, "--")
    if result.returncode != 0:
        raise DiffError(f"`git diff {base}` failed: {result.stderr.strip()}")
    fields = result.stdout.split("\0")
    files = [(fields[i][:1], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    if untracked.returncode == 0:
        files += [("A", p) for p in untracked.stdout.split("\0") if p]
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


# --------------------------------------------------------------------------------- estimate


def estimate_leaf(root: Path, leaf: str, cfg: BuildConfig) -> dict[str, int]:
    """Teacher requests and estimated tokens to generate this leaf's data from scratch.

    A dry run of the leaf's pipeline (labmake.sdg) in which every sample passes every judge:
    an upper bound, since judges only ever remove samples before the next teacher call. A
    knowledge leaf's evaluation multiple choice (labmake.sdg.multiple_choice) is counted in.
    """
    from labmake.sdg.generation import estimate
    from labmake.sdg.multiple_choice import estimate_requests
    from labmake.taxonomy.seeds import leaf_record

    # Chunk counts from the quick token estimate: planning must not load a tokenizer.
    record = leaf_record(load_leaf(root, leaf), cfg.seeds, estimate_tokens)
    requests = estimate(record, cfg.generate, cfg.teacher, cfg.seed)
    requests += estimate_requests(record, cfg.evaluate.multiple_choice, cfg.teacher, cfg.seed)
    prompt = sum(estimate_tokens(r.prompt) for r in requests)
    completion = sum(r.max_tokens for r in requests)
    return {
        "requests": len(requests),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
    }


# ------------------------------------------------------------------------------ commands


def _load_config(params_path: Path, command: str) -> BuildConfig | None:
    try:
        return load(params_path)
    except ConfigError as exc:
        print(f"labmake {command}: error: {exc}", file=sys.stderr)
        return None


def _root(cfg: BuildConfig, taxonomy: Path | None) -> Path:
    return Path(taxonomy) if taxonomy is not None else Path(cfg.taxonomy.root)


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


def _line(change: LeafChange, word: str, extra: str = "") -> str:
    why = f"  ({'; '.join(change.reasons)})" if change.reasons else ""
    return f"{word:<9} {change.leaf}{extra}{why}"


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
    cfg = _load_config(params_path, "diff")
    if cfg is None:
        return EXIT_USAGE
    root = _root(cfg, taxonomy)
    try:
        commit, note = _pick_base(root, base)
        if commit is None:
            label = f"last build ({build_dir})"
            changes = [c for c in diff_against_build(root, build_dir) if c.status != UNCHANGED]
        else:
            label = f"{base or '@{upstream}'} (merge base {commit[:12]})"
            changes = diff_against_git(root, commit)
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
        print(_line(change, change.status), file=out)
    if not changes:
        print("no leaf changed", file=out)
    print(", ".join(f"{n} {s}" for s, n in counts.items()), file=out)
    return 0


def run_plan(
    params_path: Path,
    *,
    taxonomy: Path | None = None,
    build_dir: Path = Path(paths.BUILD),
    fmt: str = "text",
    out: TextIO | None = None,
) -> int:
    """Print what a build would redo per leaf, with the teacher work it costs; 0 or 2."""
    out = out or sys.stdout
    cfg = _load_config(params_path, "plan")
    if cfg is None:
        return EXIT_USAGE
    root = _root(cfg, taxonomy)
    try:
        changes = diff_against_build(root, build_dir)
    except TaxonomyError as exc:
        print(f"labmake plan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    keys = ("requests", "prompt_tokens", "completion_tokens", "tokens")
    totals = dict.fromkeys(keys, 0)
    rows: list[tuple[LeafChange, dict[str, Any]]] = []
    for change in changes:
        row: dict[str, Any] = {"leaf": change.leaf, "status": PLAN_WORDS[change.status]}
        row["reasons"] = list(change.reasons)
        if change.status in (ADDED, CHANGED):
            try:
                estimate = estimate_leaf(root, change.leaf, cfg)
            except (TaxonomyError, ValueError, OSError) as exc:
                row["error"] = str(exc).splitlines()[0]
                estimate = dict.fromkeys(keys, 0)
            row.update(estimate)
            for key in keys:
                totals[key] += estimate[key]
        rows.append((change, row))
    totals["leaves_to_generate"] = sum(c.status in (ADDED, CHANGED) for c, _ in rows)
    for status in (ADDED, CHANGED, UNCHANGED, REMOVED):
        totals[PLAN_WORDS[status]] = sum(c.status == status for c, _ in rows)
    if fmt == "json":
        doc = {"base": f"last build ({build_dir})", "leaves": [r for _, r in rows]}
        doc["totals"] = totals
        out.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
        return 0
    print(f"base: last build ({build_dir})", file=out)
    for change, row in rows:
        extra = ""
        if "requests" in row:
            extra = f": {row['requests']} requests, ~{row['tokens']} tokens"
        if "error" in row:
            extra += f" [cannot estimate: {row['error']}]"
        print(_line(change, row["status"], extra), file=out)
    print(
        f"total: {totals['leaves_to_generate']} leaves to generate, {totals['requests']} teacher "
        f"requests, ~{totals['tokens']} tokens (~{totals['prompt_tokens']} prompt + "
        f"{totals['completion_tokens']} completion)",
        file=out,
    )
    return 0
