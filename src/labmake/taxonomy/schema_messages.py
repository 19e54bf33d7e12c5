"""Words for one schema error: what is wrong at which key, and how to fix it.

Each cerberus error code has its wording; the hint quotes the schema's ``meta`` for the value
(what it is, an example), so the fix reads like the documentation of that key.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labmake.taxonomy.findings import Issue, yaml_path
from labmake.taxonomy.schema import KNOWLEDGE, NEWEST, SKILL


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


@dataclass(frozen=True)
class _SchemaError:
    """One cerberus error with what its message needs: where, the rules there, the mode."""

    err: Any
    path: tuple[Any, ...]  # with the file's own (non-text) keys back in place
    schema: dict[str, Any]
    kind: str
    local_documents: bool

    @property
    def name(self) -> Any:
        return self.path[-1] if self.path else "."

    @property
    def where(self) -> str:
        return yaml_path(self.path)

    @property
    def meta(self) -> dict[str, str]:
        return _meta(self.schema, self.path)

    @property
    def what(self) -> str:
        return self.meta.get("what", "a value")


def error_issue(
    err: Any, schema: dict[str, Any], originals: dict[str, Any], kind: str, *, local_documents: bool
) -> Issue:
    """The issue for one cerberus error, worded for the person editing the file."""
    from cerberus import errors

    path = tuple(originals.get(p, p) if isinstance(p, str) else p for p in err.document_path)
    error = _SchemaError(err, path, schema, kind, local_documents)
    by_code: dict[int, Callable[[_SchemaError], Issue]] = {
        errors.REQUIRED_FIELD.code: _missing_key,
        errors.UNKNOWN_FIELD.code: _unknown_key,
        errors.NOT_NULLABLE.code: _no_value,
        errors.BAD_TYPE.code: _wrong_type,
        errors.MIN_LENGTH.code: _too_short,
        errors.UNALLOWED_VALUE.code: _wrong_constant,
    }
    by_rule = {"integral": _not_whole, "unique_items": _repeated}
    wording = by_code.get(err.code) or by_rule.get(err.rule) or _other_rule
    return wording(error)


def _missing_key(e: _SchemaError) -> Issue:
    name, parent = e.name, e.path[:-1]
    hint = f"add `{name}:` with {e.what}{_example(e.meta)}"
    if name in ("repo", "commit") and parent == ("document",):
        hint = "give both `repo` and `commit` (documents in a git repository)" + (
            ", or neither to use documents beside qna.yaml (`patterns` relative to its folder)"
            if e.local_documents
            else "; InstructLab reads knowledge documents only from git (labmake's own mode "
            "also accepts documents beside qna.yaml)"
        )
    elif name == "questions_and_answers":
        hint = (
            "in knowledge version 3 each seed example is a `context:` passage with its "
            "pairs under `questions_and_answers:`" + _example(e.meta)
        )
    where_msg = "the file" if not parent else f"`{yaml_path(parent)}`"
    return Issue(parent, f"{where_msg} is missing `{name}`", hint, "schema")


def _unknown_key(e: _SchemaError) -> Issue:
    path, name = e.path, e.name
    return Issue(
        path,
        f"unknown key `{_show_key(name)}` in `{yaml_path(path[:-1])}`"
        if len(path) > 1
        else f"unknown key `{_show_key(name)}`",
        _unknown_hint(name, path, e.schema, e.kind),
        "schema",
        at_key=True,
    )


def _no_value(e: _SchemaError) -> Issue:
    return Issue(
        e.path,
        f"`{e.where}` has no value",
        f"write {e.what} after `{e.name}:` (for several lines, write `{e.name}: |` and "
        "the text on the lines below, indented)",
        "schema",
    )


def _wrong_type(e: _SchemaError) -> Issue:
    expected = _EXPECTED.get(str(e.err.constraint), str(e.err.constraint))
    return Issue(
        e.path,
        f"`{e.where}` must be {expected}, not {_describe(e.err.value)}",
        _type_hint(e.name, e.err.constraint, e.err.value, e.meta),
        "schema",
    )


def _too_short(e: _SchemaError) -> Issue:
    if isinstance(e.err.value, str):
        return Issue(e.path, f"`{e.where}` is empty", f"write {e.what}{_example(e.meta)}", "schema")
    have, need = len(e.err.value), e.err.constraint
    noun = "entry" if have == 1 else "entries"
    return Issue(
        e.path,
        f"`{e.where}` has {have} {noun}; at least {need} are required",
        f"add {need - have} more: {e.what}{_example(e.meta)}",
        "schema",
    )


def _wrong_constant(e: _SchemaError) -> Issue:
    return Issue(
        e.path,
        f"`{e.where}` is {e.err.value!r}, but this schema needs {e.err.constraint[0]}",
        f"write `{e.name}: {e.err.constraint[0]}`",
        "schema",
    )


def _not_whole(e: _SchemaError) -> Issue:
    return Issue(
        e.path,
        f"`{e.where}` must be a whole number, not {e.err.value!r}",
        f"write `{e.name}: {NEWEST}`",
        "schema",
    )


def _repeated(e: _SchemaError) -> Issue:
    first, dup = e.err.info
    path = e.path
    return Issue(
        path + (dup,),
        f"`{yaml_path(path + (dup,))}` repeats `{yaml_path(path + (first,))}` word for word",
        "every entry must be different: change or delete one of the two",
        "schema",
    )


def _other_rule(e: _SchemaError) -> Issue:
    return Issue(
        e.path,
        f"`{e.where}` breaks the rule {e.err.rule}: {e.err.constraint!r}",
        f"fix {e.what}",
        "schema",
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
