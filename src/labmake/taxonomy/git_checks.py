"""What validation says of a knowledge leaf's git documents (``document: {repo, commit,
patterns}``): the commit and the source before anything is fetched, then, when asked, the
documents themselves, read as the build reads them (:mod:`labmake.taxonomy.git_documents`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from labmake.taxonomy.document_sources import DocumentSources
from labmake.taxonomy.documents import pattern_problem
from labmake.taxonomy.findings import ERROR, WARNING, Issue
from labmake.taxonomy.formats import BUILTIN, ConverterChoice
from labmake.taxonomy.git_documents import (
    COMMIT_ID,
    DocumentError,
    UnreachableError,
    read_documents,
    source_of,
)


def commit_issue(document: Mapping[str, Any], level: str) -> list[Issue]:
    """What validation says of a commit the build will refuse (a branch or tag name)."""
    commit = str(document.get("commit", "")).strip().lower()
    if COMMIT_ID.match(commit):
        return []
    return [
        Issue(
            ("document", "commit"),
            f"document.commit {commit!r} is not a commit id: the build refuses branch and tag "
            "names, which move",
            "write the commit's id (git rev-parse <branch> prints it)",
            "documents",
            level,
        )
    ]


def repo_issues(
    qna_path: Path, document: Mapping[str, Any], sources: DocumentSources | None, level: str
) -> list[Issue]:
    """What validation says of a git document before the build fetches it (no network): its
    patterns, checked as local ones are (errors), and whether ``taxonomy.document_sources``
    allows the repository (``level``: InstructLab accepts any repository)."""
    issues = []
    for k, pattern in enumerate(document.get("patterns") or []):
        pattern = str(pattern)
        problem = pattern_problem(pattern)
        if problem and pattern.startswith("/") and ".." not in PurePosixPath(pattern).parts:
            # Real taxonomies write "/docs/x.md" for the repository's root; the reference
            # accepts it, so it is a warning here, but the build reads no such path.
            problem = (
                f"pattern {pattern!r} starts with '/': git patterns are relative to the "
                "repository's root, and the build refuses this one",
                f"drop the leading '/': {pattern.lstrip('/')}",
            )
            issues.append(Issue(("document", "patterns", k), *problem, "documents", level))
        elif problem:
            issues.append(Issue(("document", "patterns", k), *problem, "security"))
    try:
        source = source_of(qna_path, str(document.get("repo", "")))
    except DocumentError as exc:
        message = str(exc).removeprefix(f"{qna_path}: ")
        return [*issues, Issue(("document", "repo"), message, _SOURCE_HINT, "security", ERROR)]
    refused = (sources or DocumentSources()).refusal(source)
    if refused is not None:
        issues.append(Issue(("document", "repo"), refused, _SOURCE_HINT, "security", level))
    return issues


def git_document_issues(
    qna_path: Path,
    document: Mapping[str, Any],
    sources: DocumentSources | None,
    *,
    fetch: bool,
    choice: ConverterChoice = BUILTIN,
) -> tuple[list[Issue], list[str]]:
    """What validation finds reading a leaf's git documents (from the cache, fetching what it
    lacks if ``fetch``), and their text. A repository that cannot be reached is a warning: the
    build will need it, but validation may run offline."""
    patterns = [str(p) for p in document.get("patterns") or []]
    repo, commit = str(document.get("repo", "")), str(document.get("commit", ""))
    try:
        documents = read_documents(
            qna_path, repo, commit, patterns, sources, fetch=fetch, choice=choice
        )
    except UnreachableError as exc:
        message, _, detail = _split(str(exc).removeprefix(f"{qna_path}: "))
        return [
            Issue(
                ("document", "repo"),
                f"cannot check the documents: {message}",
                "the build needs them: connect to the network (or fix the credentials) and run "
                f"labmake validate again{f'; {detail}' if detail else ''}",
                "documents",
                WARNING,
            )
        ], []
    except DocumentError as exc:
        message, _, hint = _split(str(exc).removeprefix(f"{qna_path}: "))
        hint = hint or "fix document.repo, commit or patterns as the message says"
        return [Issue(exc.data_path, message, hint, "documents", ERROR)], []
    return [], [d.text for d in documents]


def _split(message: str) -> tuple[str, str, str]:
    """A message written "document.key: what is wrong; what to do" as its two parts (the
    finding names the key itself)."""
    return re.sub(r"^document(\.\w+)?: ", "", message).partition("; ")


_SOURCE_HINT = (
    "name a public https:// repository; an operator who trusts this source lists it in "
    "taxonomy.document_sources in params.yaml"
)
