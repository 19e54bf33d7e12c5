"""Local knowledge documents: ``document: {patterns: [...]}`` without ``repo``/``commit``.

labmake's own form (InstructLab only reads documents from a git repository): the patterns are
globs relative to the leaf's folder and name documents beside the qna.yaml, in any format of
:mod:`labmake.taxonomy.formats` (Markdown, text, reStructuredText, PDF, Word, HTML). A pattern
may not climb out (``..``), may not be absolute, and no match may be a symlink leading outside
the taxonomy. Each document is read under a size cap and converted (cached) to the text the
teacher reads; one that cannot be, or converts to nothing, is a finding at its pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from labmake.taxonomy import formats
from labmake.taxonomy.findings import Issue
from labmake.taxonomy.limits import PromptBudget, estimate_tokens
from labmake.taxonomy.source import ReadError, read_bytes


@dataclass(frozen=True)
class ResolvedDocuments:
    files: list[Path]  # sorted
    issues: list[Issue]
    converted: dict[Path, formats.Converted]  # the files that could be read


def resolve_documents(
    root: Path,
    leaf_dir: Path,
    patterns: list[str],
    choice: formats.ConverterChoice = formats.BUILTIN,
) -> ResolvedDocuments:
    """The document files the patterns name, their text (PDF, Word and HTML converted by
    ``choice``), and what is wrong with them."""
    issues: list[Issue] = []
    found: dict[Path, tuple[Any, ...]] = {}
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
            found.setdefault(match.absolute(), where)
    documents = sorted(found)
    converted = {}
    for doc in documents:
        result = _converted(doc, leaf_dir, found[doc], choice)
        if isinstance(result, Issue):
            issues.append(result)
        else:
            converted[doc] = result
    return ResolvedDocuments(documents, issues, converted)


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
        if formats.format_of(match.name) is None:
            issues.append(
                Issue(
                    where,
                    f"pattern {pattern!r} matches {rel.as_posix()}, which "
                    "is not a document format labmake reads",
                    f"{formats.FORMATS_HINT}; convert it to one of them, or narrow the "
                    "pattern (e.g. *.md)",
                    "documents",
                )
            )
            continue
        files.append(match)
    return files


def _converted(
    doc: Path, leaf_dir: Path, where: tuple[Any, ...], choice: formats.ConverterChoice
) -> formats.Converted | Issue:
    """The document's text, or what is wrong with it: too big, unreadable, or empty."""
    rel = doc.relative_to(leaf_dir.absolute()).as_posix()
    try:
        data = read_bytes(doc, f"document {rel}", formats.max_bytes(rel))
        return formats.convert(data, rel, choice)
    except ReadError as exc:
        p = exc.problem
        return Issue(
            where, p.message, p.hint, "security" if p.source == "security" else "documents"
        )
    except formats.ConversionError as exc:
        return Issue(where, exc.message, exc.hint, "documents")


def length_issues(texts: list[str], budget: PromptBudget, level: str) -> list[Issue]:
    """A leaf whose documents are too long for the teacher's budget: the knowledge pipeline asks
    ``samples_per_chunk`` requests of every chunk, so its first round alone would pass
    ``max_requests`` (a cost that grows with the documents, unbounded by the yield floor)."""
    tokens = sum(estimate_tokens(t) for t in texts)
    chunks = -(-tokens // max(1, budget.chunk_tokens))
    requests = chunks * budget.samples_per_chunk
    if requests <= budget.max_requests:
        return []
    return [
        Issue(
            ("document",),
            f"the documents come to about {tokens} tokens: {chunks} chunks of "
            f"{budget.chunk_tokens}, {requests} teacher requests in the first round alone, over "
            f"generate.knowledge.max_requests ({budget.max_requests})",
            "split the documents across leaves by topic, each with seed examples from its own "
            "part, or raise max_requests in params.yaml if that cost is meant",
            "limits",
            level,
        )
    ]


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
            if formats.format_of(p.name) and not p.name.startswith(".")
        )
    except OSError:
        names = []
    if names:
        return f"documents in this folder: {', '.join(names)}; fix the pattern to match them"
    return (
        "put the document (Markdown, PDF, Word or HTML) in the leaf folder next to qna.yaml, "
        "or fix the pattern"
    )
