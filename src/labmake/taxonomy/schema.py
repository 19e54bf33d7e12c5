"""Which schema a qna.yaml is checked against, and the schemas themselves (cerberus).

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

The check is :mod:`labmake.taxonomy.schema_check`; the wording of its findings,
:mod:`labmake.taxonomy.schema_messages`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

import yaml

KNOWLEDGE = "knowledge"
SKILL = "skill"
# The folders the reference knows by name; the first one decides the kind.
KIND_FOLDERS = {"knowledge": KNOWLEDGE, "compositional_skills": SKILL}
SCHEMAS = {(SKILL, 1), (SKILL, 2), (SKILL, 3), (KNOWLEDGE, 3)}
NEWEST = 3


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


def _json_key(value: Any) -> Any:
    """A hashable form of ``value`` under which two values are equal exactly when
    :func:`_json_equal` says so: bools apart from numbers, 1 == 1.0, containers deeply."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, int | float):
        return ("num", value)  # hash(1) == hash(1.0), as JSON's 1 and 1.0 are one number
    if isinstance(value, list):
        return ("list", tuple(_json_key(v) for v in value))
    if isinstance(value, Mapping):
        return ("map", frozenset((_json_key(k), _json_key(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return ("other", id(value))  # unhashable and not JSON: equal only to itself
    return ("other", value)


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
            # One pass with a hash of each item's JSON form: comparing every pair took minutes
            # on a file of 10,000 short examples (still under the size cap).
            first: dict[Any, int] = {}
            for j, item in enumerate(value):
                key = _json_key(item)
                i = first.setdefault(key, j)
                if i != j:
                    self._error(field, unique_error, i, j)

    return TaxonomyValidator


@cache
def raw_schema(name: str) -> dict[str, Any]:
    """The cerberus rules of ``schemas/<name>.yaml``; ``<name>_local`` is the same schema with
    ``repo`` and ``commit`` optional (labmake's documents beside the qna.yaml)."""
    if name.endswith("_local"):
        schema = copy.deepcopy(raw_schema(name.removesuffix("_local")))
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
def validator(name: str) -> Any:
    """One validator per schema, built once: compiling the rules costs more than a check."""
    return _validator_class()(raw_schema(name))


_KEY_PREFIX = "\x00labmake-key:"


def string_keys(data: Any) -> tuple[Any, dict[str, Any]]:
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


def leaf_errors(errors: Any) -> list[Any]:
    """cerberus's errors with every group error replaced by the errors inside it."""
    out = []
    for err in errors:
        if err.is_group_error:
            out.extend(leaf_errors(err.child_errors))
        else:
            out.append(err)
    return out
