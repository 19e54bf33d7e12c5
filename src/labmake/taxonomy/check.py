"""Validating one leaf's qna.yaml: every problem as a finding with a position and a fix.

The file is untrusted input, checked in this order (the reference's order):

1. read: size cap, UTF-8, no binary (:mod:`labmake.taxonomy.source`);
2. parse with ``yaml.safe_load`` semantics; alias bombs and ``!!python`` tags refused;
3. an empty file only warns; anything but a mapping is an error;
4. yamllint with InstructLab's rules, for files of version 2 and later (the reference skips
   version 1 files; labmake shows their lint as warnings) (:mod:`labmake.taxonomy.lint`);
5. the cerberus schema of the file's kind and version (:mod:`labmake.taxonomy.schema_check`);
6. labmake's own mode only: the limits InstructLab documents but does not enforce
   (:mod:`labmake.taxonomy.limits`), seed examples that trip the safety policy's detectors
   (:mod:`labmake.taxonomy.seed_safety`), and the documents beside the qna.yaml.

Two modes. The default (labmake's own) accepts exactly the files InstructLab's validator
(instructlab-schema 0.4.2 with yamllint) accepts, plus local documents, and adds warnings.
``ilab_strict`` agrees with ``ilab taxonomy diff``: yamllint warnings are errors, no local
documents, no labmake limits. Only light modules are imported here (yaml; cerberus and
yamllint on first use), so validating a file costs milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from labmake.core.safety import Policy
from labmake.taxonomy import schema_check
from labmake.taxonomy.caps import check_example_count, example_count_issue
from labmake.taxonomy.document_sources import DocumentSources
from labmake.taxonomy.documents import length_issues, resolve_documents
from labmake.taxonomy.findings import ERROR, WARNING, Finding, Issue, printable, yaml_path
from labmake.taxonomy.formats import BUILTIN, Converted, ConverterChoice
from labmake.taxonomy.git_checks import commit_issue, git_document_issues, repo_issues
from labmake.taxonomy.leaf_names import leaf_name_problem
from labmake.taxonomy.limits import PromptBudget, context_issues, limit_issues
from labmake.taxonomy.lint import lint
from labmake.taxonomy.scan import QNA, TOP_FOLDERS
from labmake.taxonomy.schema import KNOWLEDGE, file_version, kind_for
from labmake.taxonomy.seed_safety import seed_safety_issues
from labmake.taxonomy.source import Parsed, ReadError, parse, read_text
from labmake.taxonomy.yaml_nodes import position


@dataclass
class LeafReport:
    """Everything known about one checked leaf: its findings, and what loading it needs."""

    display: str  # the file as the user named it
    leaf: str | None  # None: a finding about the taxonomy, not about one leaf's file
    findings: list[Finding] = field(default_factory=list)
    kind: str | None = None
    version: Any = None
    data: Any = None
    documents: list[Path] = field(default_factory=list)
    converted: dict[Path, Converted] = field(default_factory=dict)  # their text

    @property
    def valid(self) -> bool:
        return not any(f.level == ERROR for f in self.findings)

    def add(
        self,
        message: str,
        hint: str,
        source: str,
        line: int | None = None,
        col: int | None = None,
        level: str = ERROR,
    ) -> None:
        """A finding about the whole file, or about a line and column of it."""
        self.findings.append(Finding(self.display, line, col, None, level, message, hint, source))

    def add_issue(self, parsed: Parsed, issue: Issue) -> None:
        """An issue found in the data, placed at the line and column its path has in the text."""
        line, col = position(parsed.node, issue.data_path, key=issue.at_key)
        self.findings.append(
            Finding(
                self.display,
                line,
                col,
                yaml_path(issue.data_path),
                issue.level,
                issue.message,
                issue.hint,
                issue.source,
            )
        )


@dataclass(frozen=True)
class CheckMode:
    """How strictly to check: InstructLab's ``taxonomy diff`` rules, or labmake's own."""

    ilab_strict: bool = False
    strict_limits: bool = False  # labmake's limits are errors, not warnings
    budget: PromptBudget | None = None  # check that seed examples fit the teacher's prompt
    safety: Policy | None = None  # the safety policy seeds are checked against; None: shipped
    # params.yaml's taxonomy.document_sources; None: its default (public https only)
    sources: DocumentSources | None = None
    # Documents in git repositories: "skip" (schema only; the build reads them), "cache" (read
    # them from labmake's git cache) or "fetch" (fetch what the cache lacks).
    git_documents: str = "skip"
    converter: ConverterChoice = BUILTIN  # params.yaml's seeds.converter


def validate_leaf(
    root: Path,
    leaf: str,
    *,
    ilab_strict: bool = False,
    context_tokens: int | None = None,
    strict_limits: bool = False,
    budget: PromptBudget | None = None,
) -> list[Finding]:
    """Findings for ``root/leaf/qna.yaml``, errors and warnings, sorted by position.

    ``context_tokens``: the teacher's context window (teacher.n_ctx); with it, the seed
    examples are checked to fit a prompt (other sizes from ``budget`` or the defaults).
    ``strict_limits``: labmake's limits are errors instead of warnings.
    """
    if budget is None and context_tokens is not None:
        budget = PromptBudget(n_ctx=context_tokens)
    elif budget is not None and context_tokens is not None:
        budget = PromptBudget(
            context_tokens, budget.max_tokens, budget.examples_per_prompt, budget.chunk_tokens
        )
    return check_leaf(Path(root), leaf, CheckMode(ilab_strict, strict_limits, budget)).findings


def check_leaf(root: Path, leaf: str, mode: CheckMode) -> LeafReport:
    """The report on ``root/leaf/qna.yaml`` (``leaf`` "." or "": a qna.yaml in the root)."""
    display = str(root / leaf / QNA) if leaf not in ("", ".") else str(root / QNA)
    report = LeafReport(printable(display), leaf)
    try:
        _run_checks(report, root, leaf, mode)
    except Exception as exc:  # never a traceback for a bad file: say what happened instead
        report.add(
            f"labmake could not check this file ({type(exc).__name__}: {exc})",
            "this is a bug in labmake; please report it with the file",
            "internal",
        )
    report.findings.sort(key=Finding.sort_key)
    return report


def _run_checks(report: LeafReport, root: Path, leaf: str, mode: CheckMode) -> None:
    """The steps of the module docstring, in order; each stops the rest when it must."""
    rel = PurePosixPath(leaf) if leaf not in ("", ".") else PurePosixPath()
    qna = _locate(report, root, rel, leaf)
    if qna is None:
        return
    named = leaf_name_problem(rel.as_posix()) if rel.parts else None
    if named is not None:  # the content is still checked: the author may fix both at once
        report.add(named[0], named[1], "security")
    parsed = _read(report, qna)
    if parsed is None:
        return
    report.data = data = parsed.data
    report.kind = kind_for(rel.parts, data)
    _check_placement(report, rel, data)
    if not _check_shape(report, data) or not _check_example_count(report, parsed, data):
        return
    if report.kind == KNOWLEDGE and rel.parts and rel.parts[0] == "foundational_skills":
        report.add_issue(
            parsed,
            Issue(
                ("document",),
                "this file has a `document` key, so it is read as knowledge "
                "(foundational_skills/ holds skills otherwise)",
                "move the leaf under knowledge/, or delete `document` if it is a skill",
                "schema",
                WARNING,
                at_key=True,
            ),
        )
    _check_lint(report, parsed, mode)
    report.version, issues = schema_check.check(
        data, report.kind, local_documents=not mode.ilab_strict
    )
    for issue in issues:
        report.add_issue(parsed, issue)
    if issues or mode.ilab_strict:
        return
    for issue in _labmake_issues(report, root, rel, mode):
        report.add_issue(parsed, issue)


def _locate(report: LeafReport, root: Path, rel: PurePosixPath, leaf: str) -> Path | None:
    """The leaf's qna.yaml, if it is a file inside the taxonomy; else why not."""
    if rel.is_absolute() or ".." in rel.parts:
        report.add(
            f"leaf {leaf!r} is not a folder inside the taxonomy",
            "name leaves relative to the taxonomy root, without '..'",
            "security",
        )
        return None
    qna = root.joinpath(*rel.parts, QNA)
    if not os.path.lexists(qna):
        report.add("file not found", f"create {QNA} in {root / rel} or check the path", "yaml")
        return None
    if not qna.resolve().is_relative_to(root.resolve()):
        report.add(
            "qna.yaml (or a folder above it) is a symlink that leads outside the taxonomy",
            "a taxonomy must be self-contained: replace the link with a copy",
            "security",
        )
        return None
    return qna


def _read(report: LeafReport, qna: Path) -> Parsed | None:
    """Steps 1 and 2: the file's text and YAML, or None with the reason as a finding."""
    try:
        text = read_text(qna)
        check_example_count(text)
        return parse(text)
    except ReadError as exc:
        p = exc.problem  # a problem of the whole file is reported at 1:1
        report.add(p.message, p.hint, p.source, p.line or 1, p.col or 1)
        return None


_MOVE_HINT = "move the leaf into knowledge/ or compositional_skills/"


def _check_placement(report: LeafReport, rel: PurePosixPath, data: Any) -> None:
    """Warnings for a leaf the build will not see where its author expects it."""
    if rel.parts == () or rel.parts[0] not in TOP_FOLDERS:
        report.add(
            _location_message(rel, report.kind or "", data), _MOVE_HINT, "yaml", level=WARNING
        )
    hidden = [part for part in rel.parts if part.startswith(".")]
    if hidden:
        report.add(
            f"the leaf is inside the hidden folder {hidden[0]}/, which the build skips",
            f"rename {hidden[0]} without the leading dot, or move the leaf out of it",
            "yaml",
            level=WARNING,
        )


def _location_message(rel: PurePosixPath, kind: str, data: Any) -> str:
    if rel.parts == ():
        return (
            "qna.yaml sits directly in the taxonomy root, outside any branch; "
            "labmake builds only leaves in folders"
        )
    why = "it has a `document` key" if kind == KNOWLEDGE else "it has no `document` key"
    return (
        f"{rel.parts[0]}/ is not a taxonomy branch (knowledge/, compositional_skills/,"
        f" foundational_skills/); the file is read as a {kind} because {why}"
    )


def _check_shape(report: LeafReport, data: Any) -> bool:
    """Step 3: True when the data is a mapping to check further."""
    if not data:  # None, {}, [], "", 0: the reference only warns
        report.add(
            "the file is empty (InstructLab accepts it, but there is nothing to build)",
            "fill it in (see taxonomy/README.md) or delete the leaf folder; the build stops "
            "at an empty leaf",
            "yaml",
            1,
            1,
            WARNING,
        )
        return False
    if not isinstance(data, Mapping):
        report.add(
            f"the file must be a mapping of keys (version, created_by, seed_examples, ...), "
            f"but it is {_shape(data)}",
            "start every top-level key at the first column: `version: 3`, `created_by: you`, ...",
            "schema",
            1,
            1,
        )
        return False
    return True


def _check_example_count(report: LeafReport, parsed: Parsed, data: Mapping[Any, Any]) -> bool:
    """The cap on seed examples, before the costlier checks: False when it is exceeded."""
    issue = example_count_issue(data)
    if issue is not None:
        report.add_issue(parsed, issue)
    return issue is None


def _shape(data: Any) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "plain text (a missing `key:` or a colon in the wrong place?)"
    return f"a single value ({data!r})"


def _check_lint(report: LeafReport, parsed: Parsed, mode: CheckMode) -> None:
    """Step 4: yamllint, enforced from version 2 on (the reference's rule), else advisory."""
    try:
        version = file_version(parsed.data)
    except OverflowError:
        version = None
    if isinstance(version, int) and not isinstance(version, bool) and version > 1:
        found = lint(report.display, parsed, enforce=True, ilab_strict=mode.ilab_strict)
    elif not mode.ilab_strict:
        found = lint(report.display, parsed, enforce=False, ilab_strict=False)
    else:
        return
    report.findings.extend(found)


def _labmake_issues(
    report: LeafReport, root: Path, rel: PurePosixPath, mode: CheckMode
) -> list[Issue]:
    """Step 6, labmake's own mode: limits, the prompt budget, seed safety, the documents."""
    data, kind = report.data, report.kind or ""
    level = ERROR if mode.strict_limits else WARNING
    issues = limit_issues(data, kind, level)
    if mode.budget is not None:
        issues += context_issues(data, kind, mode.budget, level)
    issues += seed_safety_issues(data, kind, mode.safety, level)
    document = data.get("document")
    if kind != KNOWLEDGE or not isinstance(document, Mapping):
        return issues
    if "repo" in document:
        qna = root.joinpath(*rel.parts, QNA)
        repo_found = commit_issue(document, level) + repo_issues(qna, document, mode.sources, level)
        issues += repo_found
        if mode.git_documents != "skip" and not repo_found:
            fetch = mode.git_documents == "fetch"
            found, texts = git_document_issues(
                qna, document, mode.sources, fetch=fetch, choice=mode.converter
            )
            issues += found + length_issues(texts, mode.budget or PromptBudget(), level)
        return issues
    resolved = resolve_documents(
        root, root.joinpath(*rel.parts), list(document["patterns"]), mode.converter
    )
    report.documents, report.converted = resolved.files, resolved.converted
    texts = [c.text for c in resolved.converted.values()]
    return issues + resolved.issues + length_issues(texts, mode.budget or PromptBudget(), level)
