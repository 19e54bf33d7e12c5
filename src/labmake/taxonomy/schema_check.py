"""The schema check of a loaded qna.yaml: one :class:`Issue` per mistake, with its fix.

cerberus reports a misspelled key as two errors (an unknown key and a missing one) and a
knowledge example written the version 2 way as several; each such group becomes one issue
with one fix here, before the remaining errors are worded one by one
(:mod:`labmake.taxonomy.schema_messages`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from labmake.taxonomy.findings import Issue, yaml_path
from labmake.taxonomy.schema import (
    KNOWLEDGE,
    NEWEST,
    SCHEMAS,
    file_version,
    leaf_errors,
    raw_schema,
    string_keys,
    validator,
)
from labmake.taxonomy.schema_messages import error_issue

UPGRADE_KNOWLEDGE = (
    "upgrade the file to version 3: set `version: 3`; add `document_outline:` (one or two "
    "sentences summing up the document); remove `task_description`; make each seed example "
    "a passage of the document with its questions: `- context: <passage>` followed by "
    "`questions_and_answers:` holding three or more `question:`/`answer:` pairs about that "
    "passage, with at least five such seed examples"
)


def check(data: Mapping[Any, Any], kind: str, *, local_documents: bool) -> tuple[Any, list[Issue]]:
    """Schema issues of a loaded file; also returns the version it was read as.

    ``local_documents``: labmake's own mode, where a knowledge ``document`` without ``repo``
    and ``commit`` names files beside the qna.yaml.
    """
    try:
        version = file_version(data)
    except OverflowError:
        return None, [_version_issue(data.get("version"))]
    # bool is an int to Python: True would pass for 1 in the tuple test below.
    if isinstance(version, bool) or version not in (1, 2, 3):
        return version, [_version_issue(data.get("version"))]
    if (kind, version) not in SCHEMAS:  # knowledge 1 and 2
        return version, [_retired_issue(data, version)]
    name = _schema_name(data, kind, version, local_documents)
    plain, originals = string_keys(data)
    checker = validator(name)
    if checker.validate(plain, normalize=False):
        return version, []
    errors = leaf_errors(checker._errors)
    issues = _misspelled_keys(errors, originals)
    if kind == KNOWLEDGE:
        issues += _old_knowledge_layout(errors)
    schema = raw_schema(name)
    issues += [
        error_issue(err, schema, originals, kind, local_documents=local_documents) for err in errors
    ]
    return version, issues


def _schema_name(data: Mapping[Any, Any], kind: str, version: int, local_documents: bool) -> str:
    """``<kind>_v<version>``, with ``_local`` for knowledge whose documents sit beside it."""
    document = data.get("document")
    local = (
        local_documents
        and kind == KNOWLEDGE
        and isinstance(document, Mapping)
        and "repo" not in document
        and "commit" not in document
    )
    return f"{kind}_v{version}" + ("_local" if local else "")


def _retired_issue(data: Mapping[Any, Any], version: int) -> Issue:
    if "version" in data:
        message = f"knowledge version {version} is retired; InstructLab reads only version 3"
    else:
        message = (
            "this knowledge file has no `version`, so it is version 1, which "
            "InstructLab no longer reads (knowledge needs version 3)"
        )
    return Issue(("version",) if "version" in data else (), message, UPGRADE_KNOWLEDGE, "schema")


def _old_knowledge_layout(errors: list[Any]) -> list[Issue]:
    """One issue for a knowledge seed example written the version 2 way (question/answer
    directly in it, no questions_and_answers); its errors are removed from ``errors``."""
    from cerberus import errors as codes

    issues = []
    for miss in [e for e in errors if e.code == codes.REQUIRED_FIELD.code]:
        path = miss.document_path
        if len(path) != 3 or path[0] != "seed_examples" or path[2] != "questions_and_answers":
            continue
        strays = [
            e
            for e in errors
            if e.code == codes.UNKNOWN_FIELD.code
            and e.document_path[:2] == path[:2]
            and e.document_path[2] in ("question", "answer")
        ]
        if not strays:
            continue
        for err in [miss, *strays]:
            errors.remove(err)
        issues.append(
            Issue(
                path[:2],
                f"`{yaml_path(path[:2])}` has `question`/`answer` directly; knowledge "
                "version 3 nests them under `questions_and_answers:`",
                "move the pair under `questions_and_answers:` and add at least two more pairs "
                "about the same context; for example:\n"
                "- context: A passage copied from the document ...\n"
                "  questions_and_answers:\n"
                "    - question: ...\n"
                "      answer: ...",
                "schema",
            )
        )
    return issues


def _misspelled_keys(errors: list[Any], originals: dict[str, Any]) -> list[Issue]:
    """One issue, not two, for a misspelled key: `anwser` unknown where `answer` is missing.

    The pairs found are removed from ``errors``.
    """
    from cerberus import errors as codes

    missing = [e for e in errors if e.code == codes.REQUIRED_FIELD.code]
    unknown = [
        e
        for e in errors
        if e.code == codes.UNKNOWN_FIELD.code and e.document_path[-1] not in originals
    ]
    issues = []
    for miss in missing:
        want, parent = miss.document_path[-1], miss.document_path[:-1]
        candidates = {
            e.document_path[-1]: e
            for e in unknown
            if e.document_path[:-1] == parent and e in errors
        }
        close = difflib.get_close_matches(want, list(candidates), n=1, cutoff=0.6)
        if not close and want.lower() in {c.lower().strip() for c in candidates}:
            close = [c for c in candidates if c.lower().strip() == want.lower()]
        if close:
            typo = candidates[close[0]]
            errors.remove(miss)
            errors.remove(typo)
            issues.append(
                Issue(
                    typo.document_path,
                    f"`{close[0]}` should be `{want}`"
                    + (f" in `{yaml_path(parent)}`" if parent else ""),
                    f"rename `{close[0]}` to `{want}`",
                    "schema",
                    at_key=True,
                )
            )
    return issues


def _version_issue(raw: Any) -> Issue:
    return Issue(
        ("version",),
        f"version {raw!r} is not a taxonomy format version (1, 2 or 3)",
        f"write `version: {NEWEST}`, the newest format (skills may also use 2, or leave "
        "`version` out for the old format 1)",
        "schema",
    )
