"""Which schema a qna.yaml is checked against, and the check itself (cerberus).

The rules follow the reference validator (instructlab-schema 0.4.2) decision for decision:

* kind: the deepest ``knowledge`` or ``compositional_skills`` folder in the file's path decides;
  under any other folder (``foundational_skills``, ...) a file with a ``document`` key is
  knowledge and any other file a skill;
* version: the file's own ``version`` (1 when absent; a non-integer is converted with ``int()``
  when it can be, else read as 1, and then fails the type check);
* knowledge versions 1 and 2 are retired; skills accept 1, 2 and 3.

The schemas (``schemas/<kind>_v<N>.yaml``) are cerberus translations of the reference's JSON
schemas. Two JSON Schema notions have no cerberus rule and are added here: ``json_integer``
(an int that is not a bool, or a float with an integral value, as JSON Schema's "integer") and
``unique_items`` (JSON equality: ``1`` and ``True`` differ, ``1`` and ``1.0`` do not).
"""

from __future__ import annotations

import copy
import datetime
import difflib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import yaml

from labmake.taxonomy.findings import Issue, yaml_path

KNOWLEDGE = "knowledge"
SKILL = "skill"
# The folders the reference knows by name; the first one decides the kind.
KIND_FOLDERS = {"knowledge": KNOWLEDGE, "compositional_skills": SKILL}
SCHEMAS = {(SKILL, 1), (SKILL, 2), (SKILL, 3), (KNOWLEDGE, 3)}
NEWEST = 3

UPGRADE_KNOWLEDGE = (
    "upgrade the file to version 3: set `version: 3`; add `document_outline:` (one or two "
    "sentences summing up the document); remove `task_description`; make each seed example "
    "a passage of the document with its questions: `- context: <passage>` followed by "
    "`questions_and_answers:` holding three or more `question:`/`answer:` pairs about that "
    "passage, with at least five such seed examples"
)


def kind_for(rel_parts: Sequence[str], data: Any) -> str:
    """'knowledge' or 'skill' for a qna.yaml in folder ``rel_parts`` (taxonomy-relative)."""
    for part in reversed(rel_parts):
        if part in KIND_FOLDERS:
            return KIND_FOLDERS[part]
    return KNOWLEDGE if isinstance(data, Mapping) and "document" in data else SKILL


def file_version(data: Mapping[Any, Any]) -> Any:
    """The version the reference picks a schema by (may be a bool, which has no schema)."""
    raw = data.get("version", 1)
    if isinstance(raw, int):
        return raw
    try:
        return int(raw)
    except (ValueError, TypeError):
        return 1


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
        if "version" in data:
            message = f"knowledge version {version} is retired; InstructLab reads only version 3"
        else:
            message = (
                "this knowledge file has no `version`, so it is version 1, which "
                "InstructLab no longer reads (knowledge needs version 3)"
            )
        return version, [
            Issue(("version",) if "version" in data else (), message, UPGRADE_KNOWLEDGE, "schema")
        ]
    document = data.get("document")
    local = (
        local_documents
        and kind == KNOWLEDGE
        and isinstance(document, Mapping)
        and "repo" not in document
        and "commit" not in document
    )
    schema_name = f"{kind}_v{version}" + ("_local" if local else "")
    plain, originals = _string_keys(data)
    validator = _validator(schema_name)
    if validator.validate(plain, normalize=False):
        return version, []
    errors = _leaf_errors(validator._errors)
    issues = _misspelled_keys(errors, originals)
    if kind == KNOWLEDGE:
        issues += _old_knowledge_layout(errors)
    issues += [
        _issue(err, _raw_schema(schema_name), originals, kind, local_documents) for err in errors
    ]
    return version, issues


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


# ----------------------------------------------------------------------------- cerberus


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema sees it: bools are not numbers; mappings and lists deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return len(a) == len(b) and all(k in b and _json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, (list, Mapping)) or isinstance(b, (list, Mapping)):
        return False
    return bool(a == b)


@cache
def _validator_class() -> type:
    # cerberus is imported on first use so that `import labmake.taxonomy` stays cheap.
    from cerberus import TypeDefinition, Validator, errors

    # Codes of our own (below 0x80, which marks group errors; unused by cerberus).
    unique_error = errors.ErrorDefinition(0x70, "unique_items")
    integral_error = errors.ErrorDefinition(0x71, "integral")

    class TaxonomyValidator(Validator):  # type: ignore[misc]
        types_mapping = {
            **Validator.types_mapping,
            # JSON Schema's "integer": 3 and 3.0, never true/false (bool is an int in Python)
            "json_integer": TypeDefinition("json_integer", (int, float), (bool,)),
        }

        def _validate_integral(self, integral: bool, field: str, value: Any) -> None:
            """{'type': 'boolean'}"""
            if integral and isinstance(value, float) and not value.is_integer():
                self._error(field, integral_error)

        def _validate_unique_items(self, unique_items: bool, field: str, value: Any) -> None:
            """{'type': 'boolean'}"""
            if not unique_items or not isinstance(value, list):
                return
            for j in range(1, len(value)):
                for i in range(j):
                    if _json_equal(value[i], value[j]):
                        self._error(field, unique_error, i, j)
                        break

    return TaxonomyValidator


@cache
def _raw_schema(name: str) -> dict[str, Any]:
    if name.endswith("_local"):
        schema = copy.deepcopy(_raw_schema(name.removesuffix("_local")))
        for key in ("repo", "commit"):
            schema["document"]["schema"][key]["required"] = False
        return schema
    text = (
        resources.files("labmake.taxonomy")
        .joinpath("schemas", f"{name}.yaml")
        .read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


@cache
def _validator(name: str) -> Any:
    return _validator_class()(_raw_schema(name))


_KEY_PREFIX = "\x00labmake-key:"


def _string_keys(data: Any) -> tuple[Any, dict[str, Any]]:
    """A copy with every non-string key replaced by a placeholder string.

    cerberus sorts keys and fails on a mapping such as ``{true: 1, "a": 2}``; the placeholders
    still count as unknown keys, and ``originals`` maps them back for the messages.
    """
    originals: dict[str, Any] = {}

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    placeholder = f"{_KEY_PREFIX}{len(originals)}"
                    originals[placeholder] = key
                    key = placeholder
                out[key] = walk(item)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return walk(data), originals


def _leaf_errors(errors: Any) -> list[Any]:
    out = []
    for err in errors:
        if err.is_group_error:
            out.extend(_leaf_errors(err.child_errors))
        else:
            out.append(err)
    return out


# ----------------------------------------------------------------------------- messages


def _rules_at(schema: dict[str, Any], path: Sequence[Any]) -> dict[str, Any] | None:
    """The cerberus rules of the value at ``path`` (list indexes step into ``schema``)."""
    rules: dict[str, Any] | None = {"type": "dict", "schema": schema}
    for part in path:
        if rules is None:
            return None
        inner = rules.get("schema")
        if not isinstance(inner, dict):
            return None
        if isinstance(part, int) and rules.get("type") == "list":
            rules = inner
        else:
            rules = inner.get(part) if rules.get("type") == "dict" else None
    return rules


def _meta(schema: dict[str, Any], path: Sequence[Any]) -> dict[str, str]:
    rules = _rules_at(schema, path)
    return dict(rules.get("meta", {})) if rules else {}


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"text ({value!r})" if len(value) <= 20 else "text"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a date ({value})"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, Mapping):
        return "a mapping (key: value lines)"
    if isinstance(value, list):
        return "a list (`- ` lines)"
    return f"a {type(value).__name__}"


_EXPECTED = {
    "string": "text",
    "list": "a list (one `- ` line per entry)",
    "dict": "a mapping (key: value lines)",
    "json_integer": "a whole number",
}


def _example(meta: dict[str, str]) -> str:
    example = meta.get("example")
    return f"; for example:\n{example}" if example else ""


def _issue(
    err: Any, schema: dict[str, Any], originals: dict[str, Any], kind: str, local_documents: bool
) -> Issue:
    from cerberus import errors

    path = tuple(originals.get(p, p) if isinstance(p, str) else p for p in err.document_path)
    where = yaml_path(path)
    name = path[-1] if path else "."
    meta = _meta(schema, path)
    what = meta.get("what", "a value")
    code = err.code

    if code == errors.REQUIRED_FIELD.code:
        hint = f"add `{name}:` with {what}{_example(meta)}"
        parent = path[:-1]
        if name in ("repo", "commit") and parent == ("document",):
            hint = "give both `repo` and `commit` (documents in a git repository)" + (
                ", or neither to use documents beside qna.yaml (`patterns` relative to its folder)"
                if local_documents
                else "; InstructLab reads knowledge documents only from git (labmake's own mode "
                "also accepts documents beside qna.yaml)"
            )
        elif name == "questions_and_answers":
            hint = (
                "in knowledge version 3 each seed example is a `context:` passage with its "
                "pairs under `questions_and_answers:`" + _example(meta)
            )
        where_msg = "the file" if not parent else f"`{yaml_path(parent)}`"
        return Issue(parent, f"{where_msg} is missing `{name}`", hint, "schema")

    if code == errors.UNKNOWN_FIELD.code:
        return Issue(
            path,
            f"unknown key `{_show_key(name)}` in `{yaml_path(path[:-1])}`"
            if len(path) > 1
            else f"unknown key `{_show_key(name)}`",
            _unknown_hint(name, path, schema, kind),
            "schema",
            at_key=True,
        )

    if code == errors.NOT_NULLABLE.code:
        return Issue(
            path,
            f"`{where}` has no value",
            f"write {what} after `{name}:` (for several lines, write `{name}: |` and "
            "the text on the lines below, indented)",
            "schema",
        )

    if code == errors.BAD_TYPE.code:
        expected = _EXPECTED.get(str(err.constraint), str(err.constraint))
        return Issue(
            path,
            f"`{where}` must be {expected}, not {_describe(err.value)}",
            _type_hint(name, err.constraint, err.value, meta),
            "schema",
        )

    if code == errors.MIN_LENGTH.code:
        if isinstance(err.value, str):
            return Issue(path, f"`{where}` is empty", f"write {what}{_example(meta)}", "schema")
        have, need = len(err.value), err.constraint
        noun = "entry" if have == 1 else "entries"
        return Issue(
            path,
            f"`{where}` has {have} {noun}; at least {need} are required",
            f"add {need - have} more: {what}{_example(meta)}",
            "schema",
        )

    if code == errors.UNALLOWED_VALUE.code:
        return Issue(
            path,
            f"`{where}` is {err.value!r}, but this schema needs {err.constraint[0]}",
            f"write `{name}: {err.constraint[0]}`",
            "schema",
        )

    if err.rule == "integral":
        return Issue(
            path,
            f"`{where}` must be a whole number, not {err.value!r}",
            f"write `{name}: {NEWEST}`",
            "schema",
        )

    if err.rule == "unique_items":
        first, dup = err.info
        return Issue(
            path + (dup,),
            f"`{yaml_path(path + (dup,))}` repeats `{yaml_path(path + (first,))}` word for word",
            "every entry must be different: change or delete one of the two",
            "schema",
        )

    return Issue(
        path, f"`{where}` breaks the rule {err.rule}: {err.constraint!r}", f"fix {what}", "schema"
    )


def _show_key(key: Any) -> str:
    return key if isinstance(key, str) else f"{key!r} (a {type(key).__name__}, read from YAML)"


def _unknown_hint(name: Any, path: tuple[Any, ...], schema: dict[str, Any], kind: str) -> str:
    parent = path[:-1]
    rules = _rules_at(schema, parent)
    allowed = sorted((rules or {}).get("schema", {}).keys()) if rules else []
    if (
        kind == KNOWLEDGE
        and len(path) == 3
        and path[0] == "seed_examples"
        and name in ("question", "answer")
    ):
        return (
            "in knowledge version 3, questions sit under `questions_and_answers:` below "
            "the seed example's `context:`; move this pair there"
        )
    if kind == KNOWLEDGE and path == ("task_description",):
        return (
            "knowledge version 3 has no task_description; delete it and sum up the document "
            "in `document_outline:`"
        )
    if kind == SKILL and path in (("document",), ("domain",), ("document_outline",)):
        return (
            "skills have no documents or domain; if this is knowledge, the leaf belongs "
            "under knowledge/, otherwise delete the key"
        )
    if not isinstance(name, str):
        return (
            f"keys must be text; YAML reads an unquoted {name!r} as a "
            f"{type(name).__name__}. Allowed keys here: {', '.join(allowed)}"
        )
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`? Allowed keys here: {', '.join(allowed)}"
    return f"delete it or fix its name; allowed keys here: {', '.join(allowed)}"


def _type_hint(name: Any, expected: Any, value: Any, meta: dict[str, str]) -> str:
    if expected == "json_integer":
        return f"write `{name}: {NEWEST}` (a plain number, without quotes)"
    if expected == "string":
        if isinstance(value, (bool, int, float, datetime.date)):
            return f'put the value in quotes so that YAML keeps it as text: {name}: "..."'
        if isinstance(value, list):
            return (
                f"YAML read the lines starting with `- ` as a list; to keep a list inside "
                f"the text write `{name}: |` and indent the lines below it"
            )
        if isinstance(value, Mapping):
            return (
                f"the text contains `word: ` (colon and space), which YAML reads as a key; "
                f"quote the value or write `{name}: |` and indent the text below it"
            )
    if expected == "list":
        return f"write each entry on its own line starting with `- `{_example(meta)}"
    if expected == "dict":
        return f"write {meta.get('what', 'key: value lines')}{_example(meta)}"
    return f"write {meta.get('what', 'the value')}{_example(meta)}"
