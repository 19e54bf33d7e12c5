"""Which leaves changed since the last build, by content: what ``diff`` and ``plan`` share.

The last build needs no git: ``build/seeds/{leaf}.json`` records the sha256 of the leaf's
qna.yaml and of each document it read, so a leaf is new (no seeds file), removed (a seeds file
without a leaf folder) or changed (a different hash).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from labmake.core import artifacts, paths
from labmake.taxonomy.findings import TaxonomyError
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.scan import QNA, find_leaves

ADDED, CHANGED, REMOVED, UNCHANGED = "added", "changed", "removed", "unchanged"
ATTRIBUTION = "attribution.txt"

if TYPE_CHECKING:  # the config module is imported when a command runs, not when it is listed
    from labmake.core.config import BuildConfig


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
    # A local document by its file's hash (a build before conversions recorded its text's hash,
    # the same for a UTF-8 text file with LF line ends).
    local = [d for d in record.get("documents", []) if "repo" not in d]
    documents = {d["name"]: d.get("source_sha256") or d["sha256"] for d in local}
    return Fingerprint(record["qna_sha256"], documents)


def current_fingerprint(root: Path, leaf: str) -> Fingerprint:
    """The leaf as the seeds stage would hash it now; :class:`TaxonomyError` if it is invalid."""
    loaded = load_leaf(root, leaf)
    # The files' hashes, as seeds.leaf_record records them (source_sha256): a PDF is compared
    # by its bytes, whatever converter reads it.
    docs = {
        doc.name: converted.source_sha256
        for doc, converted in zip(loaded.documents, loaded.converted, strict=True)
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
        elif leaf not in built:
            changes.append(LeafChange(leaf, ADDED, ("not in the last build",)))
        else:
            changes.append(_built_leaf_change(root, build_dir, leaf))
    return changes


def _built_leaf_change(root: Path, build_dir: Path, leaf: str) -> LeafChange:
    """A leaf both in the taxonomy and in the last build: changed or not, and why."""
    path = seeds_path(build_dir, leaf)
    try:
        old = recorded_fingerprint(artifacts.read_json(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return LeafChange(leaf, CHANGED, (f"{path} unreadable ({exc})",))
    if same_bytes(root, leaf, old):
        return LeafChange(leaf, UNCHANGED)
    try:
        new = current_fingerprint(root, leaf)
    except (TaxonomyError, OSError, UnicodeDecodeError):
        return LeafChange(leaf, CHANGED, ("invalid now: run labmake validate",))
    reasons = compare_fingerprints(old, new)
    return LeafChange(leaf, CHANGED if reasons else UNCHANGED, reasons)


# ------------------------------------------------------------- what both commands print


def load_project(
    params_path: Path, taxonomy: Path | None, command: str
) -> tuple[BuildConfig, Path] | None:
    """params.yaml and the taxonomy root (``--taxonomy`` when given, else params.yaml's), or
    None after printing why params.yaml cannot be used (a usage error)."""
    from labmake.core.config import ConfigError, load

    try:
        cfg = load(params_path)
    except ConfigError as exc:
        print(f"labmake {command}: error: {exc}", file=sys.stderr)
        return None
    return cfg, Path(taxonomy) if taxonomy is not None else Path(cfg.taxonomy.root)


def change_line(change: LeafChange, word: str, extra: str = "") -> str:
    """One leaf's line of text output: status word, leaf, what it costs, why."""
    why = f"  ({'; '.join(change.reasons)})" if change.reasons else ""
    return f"{word:<9} {change.leaf}{extra}{why}"
