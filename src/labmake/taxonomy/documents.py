"""Local knowledge documents: ``document: {patterns: [...]}`` without ``repo``/``commit``.

labmake's own form (InstructLab only reads documents from a git repository): the patterns are
globs relative to the leaf's folder and name Markdown, text or reStructuredText files beside
the qna.yaml. A pattern may not climb out (``..``), may not be absolute, and no match may be a
symlink leading outside the taxonomy. Each document must be UTF-8 text under a size cap.
The git form is only schema-checked: validation never reaches the network.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from labmake.taxonomy.findings import Issue
from labmake.taxonomy.source import ReadError, read_text

DOCUMENT_SUFFIXES = (".md", ".markdown", ".txt", ".rst")
MAX_DOCUMENT_BYTES = 8 << 20


def resolve_documents(
    root: Path, leaf_dir: Path, patterns: list[str]
) -> tuple[list[Path], list[Issue]]:
    """The sorted document files the patterns name, and what is wrong with them."""
    issues: list[Issue] = []
    found: dict[Path, None] = {}
    root_real = root.resolve()
    for k, pattern in enumerate(patterns):
        where = ("document", "patterns", k)
        files = _matching_documents(root_real, leaf_dir, pattern, where, issues)
        if not files and not any(i.data_path == where for i in issues):
            issues.append(
                Issue(
                    where,
                    f"pattern {pattern!r} matches no document in {leaf_dir.name}/",
                    _candidates_hint(leaf_dir),
                    "documents",
                )
            )
        for match in files:
            found[match.absolute()] = None
    documents = sorted(found)
    for doc in documents:
        issues.extend(_content_issues(doc, leaf_dir))
    return documents, issues


def _matching_documents(
    root_real: Path, leaf_dir: Path, pattern: str, where: tuple[Any, ...], issues: list[Issue]
) -> list[Path]:
    """The usable files one pattern matches; the unusable ones, and a bad pattern, are issues."""
    problem = pattern_problem(pattern)
    if problem:
        issues.append(Issue(where, problem[0], problem[1], "security"))
        return []
    try:
        matches = sorted(leaf_dir.glob(pattern))
    except (ValueError, OSError) as exc:
        issues.append(
            Issue(
                where,
                f"pattern {pattern!r} cannot be used: {exc}",
                "write a glob relative to this folder, such as *.md",
                "documents",
            )
        )
        return []
    files = []
    for match in matches:
        rel = match.relative_to(leaf_dir)
        if any(part.startswith(".") for part in rel.parts) or match.is_dir():
            continue
        if not match.resolve().is_relative_to(root_real):
            issues.append(
                Issue(
                    where,
                    f"document {rel.as_posix()} is a symlink that leads outside the taxonomy",
                    "copy the document into the leaf folder instead of linking to it",
                    "security",
                )
            )
            continue
        if match.suffix.lower() not in DOCUMENT_SUFFIXES:
            issues.append(
                Issue(
                    where,
                    f"pattern {pattern!r} matches {rel.as_posix()}, which "
                    "is not a Markdown or text file",
                    "labmake reads .md, .txt and .rst documents; convert it to "
                    "Markdown, or narrow the pattern (e.g. *.md)",
                    "documents",
                )
            )
            continue
        files.append(match)
    return files


def _content_issues(doc: Path, leaf_dir: Path) -> list[Issue]:
    """What is wrong with one document's bytes: too big, not UTF-8 text, or empty."""
    rel = doc.relative_to(leaf_dir.absolute()).as_posix()
    try:
        text = read_text(doc, what=f"document {rel}", max_bytes=MAX_DOCUMENT_BYTES)
    except ReadError as exc:
        p = exc.problem
        return [
            Issue(
                ("document",),
                p.message,
                p.hint,
                "security" if p.source == "security" else "documents",
            )
        ]
    if not text.strip():
        return [
            Issue(
                ("document",),
                f"document {rel} is empty",
                "put the document's text in it, or remove it from patterns",
                "documents",
            )
        ]
    return []


def pattern_problem(pattern: str) -> tuple[str, str] | None:
    if "\\" in pattern:
        return (
            f"pattern {pattern!r} uses backslashes",
            "write paths with forward slashes: docs/guide.md",
        )
    if pattern.startswith(("/", "~")) or PureWindowsPath(pattern).drive:
        return (
            f"pattern {pattern!r} is an absolute path",
            "documents live beside qna.yaml: write the pattern relative to the leaf folder, "
            "such as *.md",
        )
    if ".." in PurePosixPath(pattern).parts:
        return (
            f"pattern {pattern!r} climbs out of the leaf folder with '..'",
            "put the document in the leaf folder (or below it) and name it from there",
        )
    return None


def _candidates_hint(leaf_dir: Path) -> str:
    try:
        names = sorted(
            p.name
            for p in leaf_dir.iterdir()
            if p.suffix.lower() in DOCUMENT_SUFFIXES and not p.name.startswith(".")
        )
    except OSError:
        names = []
    if names:
        return f"documents in this folder: {', '.join(names)}; fix the pattern to match them"
    return (
        "put the document (Markdown, .md) in the leaf folder next to qna.yaml, or fix the pattern"
    )
