"""``labmake validate [PATH ...]``: check qna.yaml files as InstructLab would, and say how to fix
each problem.

A PATH is a taxonomy root (every leaf below it, hidden folders included, is checked) or one
qna.yaml. Without a PATH, params.yaml's taxonomy.root is checked; params.yaml also gives the
teacher's context window, so that seed examples too long for a prompt are caught here.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

from labmake.cli.exit_codes import EXIT_USAGE
from labmake.taxonomy.check import CheckMode, LeafReport, check_leaf
from labmake.taxonomy.document_sources import DocumentSources
from labmake.taxonomy.findings import ERROR, WARNING, Finding, indent, path_finding
from labmake.taxonomy.formats import BUILTIN, ConverterChoice
from labmake.taxonomy.limits import PromptBudget
from labmake.taxonomy.scan import QNA, TOP_FOLDERS, scan


class _UsageError(Exception):
    pass


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check qna.yaml files (InstructLab-compatible)")
    p.add_argument(
        "paths",
        nargs="*",
        help="taxonomy roots or qna.yaml files (default: params.yaml's taxonomy.root)",
    )
    p.add_argument(
        "--ilab-strict",
        action="store_true",
        help="accept exactly what `ilab taxonomy diff` accepts (yamllint warnings are errors; labmake's extra limits off)",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--strict-limits",
        action="store_true",
        help="make labmake's own limits (word counts, duplicates, context window) errors, not warnings",
    )
    p.add_argument(
        "--params", default=None, help="params.yaml to read the teacher's context size from"
    )
    p.add_argument(
        "--offline",
        action="store_true",
        help="read knowledge documents in git repositories from labmake's cache only; never fetch",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_validate(
        [Path(p) for p in args.paths],
        ilab_strict=args.ilab_strict,
        fmt=args.format,
        params_path=Path(args.params) if args.params else None,
        strict_limits=args.strict_limits,
        offline=args.offline,
    )


def run_validate(
    paths: list[Path],
    *,
    ilab_strict: bool,
    fmt: str,
    params_path: Path | None,
    strict_limits: bool = False,
    out: TextIO | None = None,
    offline: bool = False,
) -> int:
    """``labmake validate``: check every leaf under each PATH (a taxonomy root or a qna.yaml).

    Prints the findings (text grouped per file, or ``fmt="json"``) and returns the exit code:
    0 no errors, 1 errors, 2 usage error (bad PATH, bad params.yaml, unknown format).
    Knowledge documents in git repositories are read too: from labmake's git cache, fetched
    when missing unless ``offline``.
    """
    out = out or sys.stdout
    try:
        if fmt not in ("text", "json"):
            raise _UsageError(f"unknown format {fmt!r}; use text or json")
        params, budget, default_root, policy, converter = _read_params(params_path)
        problem = student_problem(params) if params is not None else None
        if problem is not None:
            raise _UsageError(problem)
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
        return EXIT_USAGE
    mode = CheckMode(ilab_strict, strict_limits, None if ilab_strict else budget, policy)
    mode = replace(
        mode,
        sources=_document_sources(params),
        git_documents="cache" if offline else "fetch",
        converter=converter,
    )
    reports = [check_leaf(root, leaf, mode) for root, leaf in targets]
    for finding in extra:  # taxonomy-level problems (symlinks out, misnamed files, no leaves)
        rep = LeafReport(finding.path, None)
        rep.findings.append(finding)
        reports.append(rep)
    if fmt == "json":
        _print_json(reports, mode, params, out)
    else:
        _print_text(reports, mode, out)
    return 0 if all(r.valid for r in reports) else 1


# ------------------------------------------------------------------------------- inputs


def _read_params(
    params_path: Path | None,
) -> tuple[Path | None, PromptBudget | None, Path | None, Any, ConverterChoice]:
    """(params.yaml read, the prompt budget it sets, its taxonomy root, its safety policy, the
    document converter); no file: defaults (the shipped policy: None)."""
    if params_path is None:
        params_path = Path("params.yaml")
        if not params_path.is_file():
            return None, PromptBudget(), None, None, BUILTIN
    elif not Path(params_path).is_file():
        raise _UsageError(f"{params_path}: no such file (--params)")
    from labmake.core import config

    params_path = Path(params_path)
    try:
        teacher, generate, seeds, tax = _quick_sections(params_path)
    except Exception:
        try:
            cfg = config.load(params_path)
        except config.ConfigError as exc:
            raise _UsageError(str(exc)) from None
        teacher, generate, seeds, tax = cfg.teacher, cfg.generate, cfg.seeds, cfg.taxonomy
    budget = PromptBudget(
        teacher.n_ctx,
        teacher.max_tokens,
        generate.examples_per_prompt,
        seeds.chunk_tokens,
        generate.knowledge.samples_per_chunk,
        generate.knowledge.max_requests,
    )
    root = params_path.parent / tax.root
    return params_path, budget, root, _policy(params_path, generate), ConverterChoice.of(seeds)


def student_problem(params_path: Path) -> str | None:
    """What is wrong with params.yaml's student (a Hugging Face folder that cannot be tuned or
    exported, a chat template that does not render), paths read from params.yaml's folder as
    the build reads them from its own; None when nothing is."""
    import yaml

    from labmake.core import config
    from labmake.core.models import StudentError
    from labmake.training.student_hf import check_tokenizer, student_inputs

    try:
        raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
        written = raw.get("student") or {} if isinstance(raw, dict) else {}
        student = config.section(config.StudentConfig, written, "student")
    except config.ConfigError as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 (an unreadable params.yaml is said by the full check)
        return None
    here = Path(params_path).parent
    student = replace(
        student,
        hf=str(here / student.hf) if student.hf else None,
        chat_template=str(here / student.chat_template) if student.chat_template else None,
    )
    try:
        student_inputs(student)
        if student.hf is not None:
            check_tokenizer(Path(student.hf))
    except StudentError as exc:
        return f"{params_path}: {str(exc).removeprefix('params.yaml: ')}"
    return None


def _policy(params_path: Path, generate: Any) -> Any:
    """generate.safety.policy (relative to params.yaml's folder), loaded; None: the shipped one."""
    if generate.safety.policy is None:
        return None
    from labmake.core import safety

    try:
        return safety.load(params_path.parent / generate.safety.policy)
    except safety.PolicyError as exc:
        raise _UsageError(str(exc)) from None


def _document_sources(params_path: Path | None) -> DocumentSources | None:
    """params.yaml's taxonomy.document_sources (folders relative to its own folder, where the
    build runs); None without a params.yaml: the default, public https repositories only."""
    if params_path is None:
        return None
    from labmake.core import config

    try:
        taxonomy = _quick_sections(params_path)[3]
    except Exception:
        taxonomy = config.load(params_path).taxonomy  # already checked by _read_params
    return DocumentSources(tuple(taxonomy.document_sources), params_path.parent)


def _quick_sections(params_path: Path) -> tuple[Any, Any, Any, Any]:
    """The four sections validate reads, typed by their dataclasses; any doubt raises, and the
    caller then runs the full (slower) schema check for its message."""
    import yaml

    from labmake.core import config

    raw = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    teacher = config.section(config.TeacherConfig, raw.get("teacher") or {}, "teacher")
    generate = config.section(config.GenerateConfig, raw.get("generate") or {}, "generate")
    seeds = config.section(config.SeedsConfig, raw.get("seeds") or {}, "seeds")
    tax = config.section(config.TaxonomyConfig, raw.get("taxonomy") or {}, "taxonomy")
    numbers = (teacher.n_ctx, teacher.max_tokens, generate.examples_per_prompt, seeds.chunk_tokens)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in numbers):
        raise ValueError("not positive integers")
    if not isinstance(tax.root, str) or not tax.root:
        raise ValueError("taxonomy.root")
    return teacher, generate, seeds, tax


def _targets(paths: list[Path]) -> tuple[list[tuple[Path, str]], list[Finding]]:
    """(root, leaf) to check for each PATH, each once, and problems found on the way."""
    targets: list[tuple[Path, str]] = []
    extra: list[Finding] = []
    seen: set[tuple[Path, str]] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = _folder_targets(path, extra)
        elif path.is_file() or path.is_symlink():
            found = _file_targets(path, extra)
        else:
            raise _UsageError(f"{path}: no such file or folder")
        for root, leaf in found:
            key = (root.resolve(), leaf)
            if key not in seen:
                seen.add(key)
                targets.append((root, leaf))
    return targets, extra


def _folder_targets(path: Path, extra: list[Finding]) -> list[tuple[Path, str]]:
    leaves, problems = scan(path, hidden=True)
    extra.extend(problems)
    if not leaves and not problems:
        extra.append(
            path_finding(
                path,
                "no qna.yaml found in this folder or below",
                "give the taxonomy root (the folder holding knowledge/ and compositional_skills/)",
                "yaml",
                ERROR,
            )
        )
    return [(path, leaf) for leaf in leaves]


def _file_targets(path: Path, extra: list[Finding]) -> list[tuple[Path, str]]:
    if path.name != QNA:
        extra.append(
            path_finding(
                path,
                f"a taxonomy file must be named {QNA}, not {path.name!r}",
                f"rename it to {QNA}",
                "yaml",
                ERROR,
            )
        )
        return []
    return [_root_of(path)]


def _root_of(qna: Path) -> tuple[Path, str]:
    """(taxonomy root, leaf) of a qna.yaml: the root is the folder above the first branch."""
    parts = qna.parent.parts
    for i, part in enumerate(parts):
        if part in TOP_FOLDERS:
            return Path(*parts[:i]) if i else Path("."), "/".join(parts[i:])
    return qna.parent, "."


# ------------------------------------------------------------------------------ printing


def _print_text(reports: list[LeafReport], mode: CheckMode, out: TextIO) -> None:
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
            print(f"          fix: {indent(f.hint, 15)}", file=out)
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


def _print_json(
    reports: list[LeafReport], mode: CheckMode, params: Path | None, out: TextIO
) -> None:
    files = [
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
        for r in reports
    ]
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
