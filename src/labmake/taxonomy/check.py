"""The taxonomy: finding its leaves, validating their qna.yaml files, loading them for a build.

A leaf is the taxonomy-relative folder of a ``qna.yaml`` (``knowledge/science/water_cycle``).
Its file is untrusted input, checked in this order (the reference's order):

1. read: size cap, UTF-8, no binary (:mod:`labmake.taxonomy.source`);
2. parse with ``yaml.safe_load`` semantics; alias bombs and ``!!python`` tags refused;
3. an empty file only warns; anything but a mapping is an error;
4. yamllint with InstructLab's rules, for files of version 2 and later (the reference skips
   version 1 files; labmake shows their lint as warnings);
5. the cerberus schema of the file's kind and version (:mod:`labmake.taxonomy.schema`);
6. labmake's own mode only: documents beside the qna.yaml, and the limits InstructLab documents
   but does not enforce (:mod:`labmake.taxonomy.limits`).

Two modes. The default (labmake's own) accepts exactly the files InstructLab's validator
(instructlab-schema 0.4.2 with yamllint) accepts, plus local documents, and adds warnings.
``ilab_strict`` agrees with ``ilab taxonomy diff``: yamllint warnings are errors, no local
documents, no labmake limits. Only light modules are imported here (yaml; cerberus and
yamllint on first use), so validating a file costs milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from labmake.taxonomy.findings import ERROR, WARNING, Finding, Issue, yaml_path
from labmake.taxonomy.limits import PromptBudget, context_issues, limit_issues
from labmake.taxonomy.schema import KNOWLEDGE, SKILL, check, file_version, kind_for
from labmake.taxonomy.source import Parsed, ReadError, parse, path_at, position, read_text

__all__ = [
    "Finding",
    "Leaf",
    "PromptBudget",
    "SeedExample",
    "TaxonomyError",
    "find_leaves",
    "load_leaf",
    "run_validate",
    "validate_leaf",
]

QNA = "qna.yaml"
TOP_FOLDERS = ("knowledge", "compositional_skills", "foundational_skills")
# The reference's yamllint configuration (instructlab-schema's DEFAULT_YAMLLINT_CONFIG).
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"


class TaxonomyError(ValueError):
    """A taxonomy or leaf cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class SeedExample:
    question: str
    answer: str
    context: str | None


@dataclass(frozen=True)
class Leaf:
    name: str  # taxonomy-relative folder, POSIX
    kind: str  # 'knowledge' | 'skill'
    grounded: bool  # a skill whose examples carry a context (always False for knowledge)
    task_description: str  # skills; knowledge: "<domain>: <document_outline>"
    created_by: str
    seed_examples: tuple[SeedExample, ...]  # knowledge: one per Q&A pair, with its context
    documents: tuple[Path, ...]  # local document files, sorted; empty for skills and git form
    qna_path: Path
    version: int = 3
    domain: str = ""  # knowledge only
    document_outline: str = ""  # knowledge only
    document_repo: str | None = None  # knowledge, git form: not fetched by validation
    document_commit: str | None = None
    document_patterns: tuple[str, ...] = ()


# --------------------------------------------------------------------------------- leaves


def find_leaves(root: Path) -> list[str]:
    """Sorted taxonomy-relative folders holding a qna.yaml; hidden folders are skipped.

    A qna.yaml directly in the root belongs to no branch and is not a leaf (``labmake
    validate`` still checks it). Raises :class:`TaxonomyError` if the root is not a folder or
    a symlink in the tree leads outside it.
    """
    root = Path(root)
    if not root.is_dir():
        raise TaxonomyError(
            f"{root}: taxonomy root is not a folder; set taxonomy.root in "
            "params.yaml to the folder holding knowledge/ and compositional_skills/"
        )
    leaves, problems = _scan(root, hidden=False)
    errors = [f for f in problems if f.level == ERROR]
    if errors:
        raise TaxonomyError(_describe_findings(errors))
    return [leaf for leaf in leaves if leaf != "."]


# Never searched for leaves, even by `labmake validate`: tool state, not taxonomy.
_TOOL_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".dvc",
        ".snakemake",
        ".venv",
        ".tox",
        ".cache",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        "__pycache__",
        "node_modules",
    }
)


def _scan(root: Path, *, hidden: bool) -> tuple[list[str], list[Finding]]:
    """Every folder with a qna.yaml (the root as "."), and problems met on the way.

    The build skips hidden folders; ``labmake validate`` (``hidden``) still checks the leaves
    in them, as InstructLab would, and warns that the build will not see them.
    """
    root_real = root.resolve()
    leaves: list[str] = []
    problems: list[Finding] = []
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append(
                _finding(
                    folder,
                    f"cannot list this folder: {exc.strerror}",
                    "check its permissions",
                    "security",
                    ERROR,
                )
            )
            continue
        for entry in entries:
            if entry.name in _TOOL_FOLDERS or (entry.name.startswith(".") and not hidden):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root_real):
                    problems.append(
                        _finding(
                            path,
                            "symlink leads outside the taxonomy",
                            "a taxonomy must be self-contained: replace the link with a copy "
                            "of the file or folder",
                            "security",
                            ERROR,
                        )
                    )
                    continue
                if target.is_dir():
                    # Like git, which stores a link and not the folder behind it: the leaves
                    # there are found under their real path, once, with no loops.
                    problems.append(
                        _finding(
                            path,
                            "symlinked folder is not followed; its leaves count under their "
                            "real path",
                            "nothing to do if the target is in the taxonomy anyway; otherwise "
                            "move the folder here instead of linking it",
                            "yaml",
                            WARNING,
                        )
                    )
                    continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((path, rel + (entry.name,)))
            elif entry.name == QNA:
                leaves.append("/".join(rel) or ".")
            elif entry.name.lower() in ("qna.yml", "qna.yaml", "qna.yaml.txt"):
                problems.append(
                    _finding(
                        path,
                        f"{entry.name} is not read: a leaf's file must be named exactly qna.yaml",
                        f"rename it to {QNA}",
                        "yaml",
                        WARNING,
                    )
                )
    return sorted(leaves), problems


def _finding(path: Path, message: str, hint: str, source: str, level: str) -> Finding:
    return Finding(str(path), None, None, None, level, message, hint, source)


# ------------------------------------------------------------------------------ checking


@dataclass
class _Report:
    """Everything known about one checked leaf."""

    display: str
    leaf: str | None  # None: a finding about the taxonomy, not about one leaf's file
    findings: list[Finding] = field(default_factory=list)
    kind: str | None = None
    version: Any = None
    data: Any = None
    documents: list[Path] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(f.level == ERROR for f in self.findings)


@dataclass(frozen=True)
class _Mode:
    ilab_strict: bool = False
    strict_limits: bool = False
    budget: PromptBudget | None = None


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
    return _check_leaf(Path(root), leaf, _Mode(ilab_strict, strict_limits, budget)).findings


def _check_leaf(root: Path, leaf: str, mode: _Mode) -> _Report:
    report = _Report(str(root / leaf / QNA) if leaf not in ("", ".") else str(root / QNA), leaf)
    try:
        _check_into(report, root, leaf, mode)
    except Exception as exc:  # never a traceback for a bad file: say what happened instead
        report.findings.append(
            Finding(
                report.display,
                None,
                None,
                None,
                ERROR,
                f"labmake could not check this file ({type(exc).__name__}: {exc})",
                "this is a bug in labmake; please report it with the file",
                "internal",
            )
        )
    report.findings.sort(key=Finding.sort_key)
    return report


def _check_into(report: _Report, root: Path, leaf: str, mode: _Mode) -> None:
    add = report.findings.append
    display = report.display

    def problem(
        message: str,
        hint: str,
        source: str,
        line: int | None = None,
        col: int | None = None,
        level: str = ERROR,
    ) -> None:
        add(Finding(display, line, col, None, level, message, hint, source))

    rel = PurePosixPath(leaf) if leaf not in ("", ".") else PurePosixPath()
    if rel.is_absolute() or ".." in rel.parts:
        problem(
            f"leaf {leaf!r} is not a folder inside the taxonomy",
            "name leaves relative to the taxonomy root, without '..'",
            "security",
        )
        return
    qna = root.joinpath(*rel.parts, QNA)
    if not os.path.lexists(qna):
        problem("file not found", f"create {QNA} in {root / rel} or check the path", "yaml")
        return
    if not qna.resolve().is_relative_to(root.resolve()):
        problem(
            "qna.yaml (or a folder above it) is a symlink that leads outside the taxonomy",
            "a taxonomy must be self-contained: replace the link with a copy",
            "security",
        )
        return
    try:
        parsed = parse(read_text(qna))
    except ReadError as exc:
        p = exc.problem  # a problem of the whole file is reported at 1:1
        problem(p.message, p.hint, p.source, p.line or 1, p.col or 1)
        return
    report.data = data = parsed.data
    kind = report.kind = kind_for(rel.parts, data)
    if rel.parts == () or rel.parts[0] not in TOP_FOLDERS:
        _location_warning(report, rel, kind, data)
    hidden = [part for part in rel.parts if part.startswith(".")]
    if hidden:
        problem(
            f"the leaf is inside the hidden folder {hidden[0]}/, which the build skips",
            f"rename {hidden[0]} without the leading dot, or move the leaf out of it",
            "yaml",
            level=WARNING,
        )
    if not data:  # None, {}, [], "", 0: the reference only warns
        problem(
            "the file is empty (InstructLab accepts it, but there is nothing to build)",
            "fill it in (see taxonomy/README.md) or delete the leaf folder; the build stops "
            "at an empty leaf",
            "yaml",
            1,
            1,
            WARNING,
        )
        return
    if not isinstance(data, Mapping):
        problem(
            f"the file must be a mapping of keys (version, created_by, seed_examples, ...), "
            f"but it is {_shape(data)}",
            "start every top-level key at the first column: `version: 3`, `created_by: you`, ...",
            "schema",
            1,
            1,
        )
        return
    if kind == KNOWLEDGE and rel.parts and rel.parts[0] == "foundational_skills":
        add(
            _issue_finding(
                display,
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
        )

    try:
        version = file_version(data)
    except OverflowError:
        version = None
    if isinstance(version, int) and not isinstance(version, bool) and version > 1:
        _lint(report, parsed, enforce=True, ilab_strict=mode.ilab_strict)
    elif not mode.ilab_strict:
        _lint(report, parsed, enforce=False, ilab_strict=False)

    report.version, issues = check(data, kind, local_documents=not mode.ilab_strict)
    for issue in issues:
        add(_issue_finding(display, parsed, issue))
    if issues or mode.ilab_strict:
        return

    level = ERROR if mode.strict_limits else WARNING
    extra = limit_issues(data, kind, level)
    if mode.budget is not None:
        extra += context_issues(data, kind, mode.budget, level)
    document = data.get("document")
    if kind == KNOWLEDGE and isinstance(document, Mapping) and "repo" in document:
        from labmake.taxonomy.git_documents import commit_issue

        extra += commit_issue(document, level)
    if kind == KNOWLEDGE and isinstance(document, Mapping) and "repo" not in document:
        from labmake.taxonomy.documents import resolve_documents

        report.documents, doc_issues = resolve_documents(
            root, root.joinpath(*rel.parts), list(document["patterns"])
        )
        extra += doc_issues
    for issue in extra:
        add(_issue_finding(display, parsed, issue))


def _location_warning(report: _Report, rel: PurePosixPath, kind: str, data: Any) -> None:
    why = "it has a `document` key" if kind == KNOWLEDGE else "it has no `document` key"
    if rel.parts == ():
        message = (
            "qna.yaml sits directly in the taxonomy root, outside any branch; "
            "labmake builds only leaves in folders"
        )
    else:
        message = (
            f"{rel.parts[0]}/ is not a taxonomy branch (knowledge/, compositional_skills/,"
            f" foundational_skills/); the file is read as a {kind} because {why}"
        )
    report.findings.append(
        Finding(
            report.display,
            None,
            None,
            None,
            WARNING,
            message,
            "move the leaf into knowledge/ or compositional_skills/",
            "yaml",
        )
    )


def _shape(data: Any) -> str:
    if isinstance(data, list):
        return "a list"
    if isinstance(data, str):
        return "plain text (a missing `key:` or a colon in the wrong place?)"
    return f"a single value ({data!r})"


def _issue_finding(display: str, parsed: Parsed, issue: Issue) -> Finding:
    line, col = position(parsed.node, issue.data_path, key=issue.at_key)
    return Finding(
        display,
        line,
        col,
        yaml_path(issue.data_path),
        issue.level,
        issue.message,
        issue.hint,
        issue.source,
    )


# ------------------------------------------------------------------------------- yamllint

_LINT_HINTS = {
    "trailing-spaces": "delete the spaces or tabs at the end of this line",
    "new-line-at-end-of-file": "end the file with a line break (Enter after the last line)",
    "key-duplicates": "this key appears twice in one mapping and YAML keeps only the last "
    "value; merge the two or delete one",
    "indentation": "indent this line like the other entries of the same list or mapping "
    "(spaces only)",
    "empty-lines": "delete the extra blank lines",
    "new-lines": "save the file with Unix line endings (LF)",
    "colons": "write one space after a colon and none before it",
    "commas": "write `, ` between items: no space before a comma, one after",
    "hyphens": "write one space after the `-` of a list item",
    "braces": "use at most one space inside `{ }`",
    "brackets": "use at most one space inside `[ ]`",
    "anchors": "define each `&anchor` once, above every `*alias` that uses it",
    "syntax": "fix the YAML syntax at this position",
}


@cache
def _lint_config() -> Any:
    from yamllint.config import YamlLintConfig

    return YamlLintConfig(YAMLLINT_CONFIG)


def _lint(report: _Report, parsed: Parsed, *, enforce: bool, ilab_strict: bool) -> None:
    """yamllint with the reference's rules; its errors fail the file when ``enforce``."""
    from yamllint import linter

    # Bytes, as the reference pipes the text to yamllint (which then drops a UTF-8 BOM).
    for p in linter.run(parsed.text.encode("utf-8"), _lint_config()):
        level = ERROR if enforce and (p.level == "error" or ilab_strict) else WARNING
        rule = p.rule or "syntax"
        hint = _LINT_HINTS.get(rule, "see the yamllint documentation for this rule")
        if not enforce:
            hint += " (InstructLab does not lint version 1 files; it will once you upgrade)"
        elif p.level == "warning" and ilab_strict:
            hint += " (a warning for InstructLab's validator, an error for `ilab taxonomy diff`)"
        at = path_at(parsed.node, p.line, p.column)
        report.findings.append(
            Finding(
                report.display,
                p.line,
                p.column,
                yaml_path(at) if at is not None else None,
                level,
                f"{p.desc} ({rule})",
                hint,
                "yamllint",
            )
        )


# -------------------------------------------------------------------------------- loading


def load_leaf(root: Path, leaf: str) -> Leaf:
    """The validated leaf, ready for the seeds stage; :class:`TaxonomyError` if invalid."""
    root = Path(root)
    report = _check_leaf(root, leaf, _Mode())
    errors = [f for f in report.findings if f.level == ERROR]
    if errors:
        raise TaxonomyError(_describe_findings(errors))
    data = report.data
    if not data:
        raise TaxonomyError(f"{report.display}: the file is empty; fill it in or delete the leaf")
    qna = root.joinpath(*PurePosixPath(leaf).parts, QNA)
    name = PurePosixPath(leaf).as_posix()
    if report.kind == KNOWLEDGE:
        document = data["document"]
        examples = tuple(
            SeedExample(pair["question"], pair["answer"], example["context"])
            for example in data["seed_examples"]
            for pair in example["questions_and_answers"]
        )
        return Leaf(
            name=name,
            kind=KNOWLEDGE,
            grounded=False,  # "grounded" describes skills; knowledge grounds on its documents
            task_description=f"{data['domain']}: {data['document_outline']}",
            created_by=data["created_by"],
            seed_examples=examples,
            documents=tuple(report.documents),
            qna_path=qna,
            version=report.version,
            domain=data["domain"],
            document_outline=data["document_outline"],
            document_repo=document.get("repo"),
            document_commit=document.get("commit"),
            document_patterns=tuple(document["patterns"]),
        )
    examples = tuple(
        SeedExample(e["question"], e["answer"], e.get("context")) for e in data["seed_examples"]
    )
    return Leaf(
        name=name,
        kind=SKILL,
        grounded=any(e.context for e in examples),
        task_description=data["task_description"],
        created_by=data["created_by"],
        seed_examples=examples,
        documents=(),
        qna_path=qna,
        version=report.version,
    )


def _describe_findings(findings: Sequence[Finding]) -> str:
    return "\n".join(_one_line(f) for f in findings)


def _one_line(f: Finding) -> str:
    where = f.path + (f":{f.line}:{f.col}" if f.line else "")
    at = f" [{f.yaml_path}]" if f.yaml_path and f.yaml_path != "." else ""
    return f"{where}: {f.level}{at}: {f.message}\n    fix: {_indent(f.hint, 9)}"


def _indent(text: str, n: int) -> str:
    return text.replace("\n", "\n" + " " * n)


# --------------------------------------------------------------------------- the command


class _UsageError(Exception):
    pass


def run_validate(
    paths: list[Path],
    *,
    ilab_strict: bool,
    fmt: str,
    params_path: Path | None,
    strict_limits: bool = False,
    out: TextIO | None = None,
) -> int:
    """``labmake validate``: check every leaf under each PATH (a taxonomy root or a qna.yaml).

    Prints the findings (text grouped per file, or ``fmt="json"``) and returns the exit code:
    0 no errors, 1 errors, 2 usage error (bad PATH, bad params.yaml, unknown format).
    """
    out = out or sys.stdout
    try:
        if fmt not in ("text", "json"):
            raise _UsageError(f"unknown format {fmt!r}; use text or json")
        params, budget, default_root = _read_params(params_path)
        if not paths:
            if default_root is None:
                raise _UsageError(
                    "no PATH given and no params.yaml here; give a taxonomy "
                    "folder or a qna.yaml, or run from the repository root"
                )
            paths = [default_root]
        targets, extra = _targets(paths)
    except _UsageError as exc:
        print(f"labmake validate: {exc}", file=sys.stderr)
        return 2
    mode = _Mode(ilab_strict, strict_limits, None if ilab_strict else budget)
    reports = [_check_leaf(root, leaf, mode) for root, leaf in targets]
    for finding in extra:  # taxonomy-level problems (symlinks out, misnamed files, no leaves)
        rep = _Report(finding.path, None)
        rep.findings.append(finding)
        reports.append(rep)
    if fmt == "json":
        _print_json(reports, mode, params, out)
    else:
        _print_text(reports, mode, out)
    return 0 if all(r.valid for r in reports) else 1


def _read_params(params_path: Path | None) -> tuple[Path | None, PromptBudget | None, Path | None]:
    if params_path is None:
        params_path = Path("params.yaml")
        if not params_path.is_file():
            return None, PromptBudget(), None
    elif not Path(params_path).is_file():
        raise _UsageError(f"{params_path}: no such file (--params)")
    from labmake.core import config

    params_path = Path(params_path)
    try:
        # validate reads four numbers and a folder from params.yaml; the sections are typed
        # by their dataclasses, and the full (slower) schema check runs only if that fails.
        import yaml

        raw = yaml.safe_load(params_path.read_text(encoding="utf-8"))
        teacher = config.section(config.TeacherConfig, raw.get("teacher") or {}, "teacher")
        generate = config.section(config.GenerateConfig, raw.get("generate") or {}, "generate")
        seeds = config.section(config.SeedsConfig, raw.get("seeds") or {}, "seeds")
        tax = config.section(config.TaxonomyConfig, raw.get("taxonomy") or {}, "taxonomy")
        numbers = (
            teacher.n_ctx,
            teacher.max_tokens,
            generate.examples_per_prompt,
            seeds.chunk_tokens,
        )
        if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
            raise ValueError("not positive integers")
        if not isinstance(tax.root, str) or not tax.root:
            raise ValueError("taxonomy.root")
    except Exception:
        try:
            cfg = config.load(params_path)
        except config.ConfigError as exc:
            raise _UsageError(str(exc)) from None
        teacher, generate, seeds, tax = cfg.teacher, cfg.generate, cfg.seeds, cfg.taxonomy
    budget = PromptBudget(
        teacher.n_ctx, teacher.max_tokens, generate.examples_per_prompt, seeds.chunk_tokens
    )
    return params_path, budget, params_path.parent / tax.root


def _targets(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[Finding]]:
    targets: list[tuple[Path, str]] = []
    extra: list[Finding] = []
    seen: set[tuple[Path, str]] = set()

    def add(root: Path, leaf: str) -> None:
        key = (root.resolve(), leaf)
        if key not in seen:
            seen.add(key)
            targets.append((root, leaf))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            leaves, problems = _scan(path, hidden=True)
            extra.extend(problems)
            if not leaves and not problems:
                extra.append(
                    _finding(
                        path,
                        "no qna.yaml found in this folder or below",
                        "give the taxonomy root (the folder holding knowledge/ "
                        "and compositional_skills/)",
                        "yaml",
                        ERROR,
                    )
                )
            for leaf in leaves:
                add(path, leaf)
        elif path.is_file() or path.is_symlink():
            root, leaf = _root_of(path)
            if path.name != QNA:
                extra.append(
                    _finding(
                        path,
                        f"a taxonomy file must be named {QNA}, not {path.name!r}",
                        f"rename it to {QNA}",
                        "yaml",
                        ERROR,
                    )
                )
                continue
            add(root, leaf)
        else:
            raise _UsageError(f"{path}: no such file or folder")
    return targets, extra


def _root_of(qna: Path) -> tuple[Path, str]:
    """(taxonomy root, leaf) of a qna.yaml: the root is the folder above the first branch."""
    parts = qna.parent.parts
    for i, part in enumerate(parts):
        if part in TOP_FOLDERS:
            return Path(*parts[:i]) if i else Path("."), "/".join(parts[i:])
    return qna.parent, "."


def _print_text(reports: list[_Report], mode: _Mode, out: TextIO) -> None:
    errors = warnings = 0
    for report in reports:
        if not report.findings:
            continue
        e = sum(f.level == ERROR for f in report.findings)
        w = len(report.findings) - e
        errors, warnings = errors + e, warnings + w
        state = "invalid" if e else "valid"
        counts = ", ".join(s for s in (_plural(e, "error"), _plural(w, "warning")) if s)
        print(f"{report.display}: {state} ({counts})", file=out)
        for f in report.findings:
            where = f"{f.line}:{f.col}" if f.line else "-"
            at = f" [{f.yaml_path}]" if f.yaml_path and f.yaml_path != "." else ""
            print(f"  {where:>7} {f.level:<7}{at} {f.message}  ({f.source})", file=out)
            print(f"          fix: {_indent(f.hint, 15)}", file=out)
        print(file=out)
    invalid = sum(not r.valid for r in reports)
    files = sum(r.leaf is not None for r in reports)
    label = (
        "ilab-strict"
        if mode.ilab_strict
        else ("labmake, strict limits" if mode.strict_limits else "labmake")
    )
    print(
        f"labmake validate ({label}): {_plural(files, 'file') or '0 files'} checked, "
        f"{invalid} invalid; {_plural(errors, 'error') or '0 errors'}, "
        f"{_plural(warnings, 'warning') or '0 warnings'}",
        file=out,
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}" if n else ""


def _print_json(reports: list[_Report], mode: _Mode, params: Path | None, out: TextIO) -> None:
    files = []
    for r in reports:
        files.append(
            {
                "path": r.display,
                "leaf": r.leaf,
                "kind": r.kind,
                "version": r.version if type(r.version) is int else None,
                "valid": r.valid,
                "errors": sum(f.level == ERROR for f in r.findings),
                "warnings": sum(f.level == WARNING for f in r.findings),
                "findings": [asdict(f) for f in r.findings],
            }
        )
    doc = {
        "mode": "ilab-strict" if mode.ilab_strict else "labmake",
        "strict_limits": mode.strict_limits,
        "params": str(params) if params else None,
        "valid": all(r.valid for r in reports),
        "summary": {
            "files": sum(r.leaf is not None for r in reports),
            "invalid": sum(not f["valid"] for f in files),
            "errors": sum(f["errors"] for f in files),
            "warnings": sum(f["warnings"] for f in files),
        },
        "files": files,
    }
    json.dump(doc, out, ensure_ascii=False, indent=2)
    out.write("\n")
