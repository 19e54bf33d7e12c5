"""Typed configuration that is its own schema.

Each key of params.yaml is declared once, as a dataclass field made by :func:`param`: its type
(the annotation), its default, its range or allowed values, and a line of help. The cerberus
schema that checks params.yaml is generated from those declarations (:func:`schema_of`), and a
checked mapping becomes the dataclasses by :func:`from_mapping`; no second description of the config's
shape exists to drift from the first.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING = dataclasses.MISSING
# Rules a field may carry (cerberus's names); `item` holds rules for each item of a list.
_RULES = ("min", "max", "allowed", "regex", "empty", "minlength", "maxlength")


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or does not match the schema."""


def param(
    default: Any = _MISSING,
    *,
    help: str,
    factory: Any = _MISSING,
    item: dict[str, Any] | None = None,
    key: str | None = None,
    **rules: Any,
) -> Any:
    """A config field: its default (or ``factory``), help, and cerberus rules (min, max,
    allowed, regex, empty, minlength, maxlength; ``item`` for each item of a list). ``key``:
    the name in params.yaml when it cannot be the field's (a Python keyword such as ``try``)."""
    unknown = set(rules) - set(_RULES)
    if unknown:
        raise TypeError(f"param(): unknown rule(s) {sorted(unknown)}")
    metadata = {"help": help, "rules": rules, "item": item or {}, "key": key}
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def help_at(cls: type, dotted: str) -> str:
    """The help of the key at ``dotted`` ("teacher.n_ctx", "train.phases.0.name"), or ""."""
    help_text = ""
    for part in dotted.split("."):
        if part.isdigit():
            continue
        fields = (
            {key_of(f): f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        )
        if part not in fields:
            return ""
        help_text = fields[part].metadata.get("help", "")
        tp, _ = _optional(typing.get_type_hints(cls)[fields[part].name])
        cls = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
    return help_text


def key_of(f: dataclasses.Field[Any]) -> str:
    """A field's name in params.yaml: its declared ``key``, else the field's own name."""
    return f.metadata.get("key") or f.name


def _optional(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None is allowed)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(tp))
        return functools.reduce(operator.or_, args), nullable
    return tp, False


def _type_schema(tp: Any) -> dict[str, Any]:
    """The cerberus schema of a value of type ``tp`` (rules of the field excluded)."""
    tp, nullable = _optional(tp)
    out: dict[str, Any] = {"nullable": True} if nullable else {}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        out["anyof"] = [_type_schema(a) for a in typing.get_args(tp)]
    elif origin is tuple:
        out.update(type="list", schema=_type_schema(typing.get_args(tp)[0]))
    elif dataclasses.is_dataclass(tp):
        out.update(type="dict", schema=schema_of(tp))
    elif tp is bool:
        out["type"] = "boolean"
    elif tp is int:
        out["type"] = "integer"
    elif tp is float:
        out.update(type="float", coerce="float")
    elif tp is str:
        out["type"] = "string"
    else:
        raise TypeError(f"no schema for type {tp!r}")
    return out


@functools.cache
def schema_of(cls: type) -> dict[str, Any]:
    """The cerberus schema of dataclass ``cls``, from its fields' types and :func:`param`s."""
    hints = typing.get_type_hints(cls)
    schema = {}
    for f in dataclasses.fields(cls):
        rules = _type_schema(hints[f.name])
        declared = dict(f.metadata.get("rules", {}))
        if "anyof" in rules and declared:
            # A union: each rule applies to the branches that can carry it (numbers: min/max).
            for branch in rules["anyof"]:
                numeric = branch.get("type") in ("integer", "float")
                branch.update(
                    {k: v for k, v in declared.items() if (k in ("min", "max")) == numeric}
                )
        else:
            rules.update(declared)
        if f.metadata.get("item"):
            rules["schema"] = {**rules.get("schema", {}), **f.metadata["item"]}
        if f.default is _MISSING and f.default_factory is _MISSING:
            rules["required"] = True
        schema[key_of(f)] = rules
    return schema


@functools.cache
def validator_class() -> type:
    from cerberus import TypeDefinition, Validator

    class ParamsValidator(Validator):  # type: ignore[misc]
        # A YAML `true` is not a number: cerberus would take it for 1.
        types_mapping = {
            **Validator.types_mapping,
            "integer": TypeDefinition("integer", (int,), (bool,)),
            "float": TypeDefinition("float", (float, int), (bool,)),
        }

        def _normalize_coerce_float(self, value: Any) -> Any:
            # `dvc exp` rewrites 5.0e-5 as 5e-05, which YAML reads as a string.
            if isinstance(value, bool):
                return value
            try:
                return float(value)
            except (TypeError, ValueError):
                return value

    return ParamsValidator


def explain(errors: Any, cls: type) -> list[str]:
    """cerberus's errors as "key: problem (what the key is)" lines."""
    out = []
    for line in flatten_errors(errors):
        key, _, problem = line.partition(": ")
        what = help_at(cls, key)
        if key in REMOVED_KEYS:
            what = REMOVED_KEYS[key]
        out.append(f"{key}: {problem}" + (f" ({key.rsplit('.', 1)[-1]}: {what})" if what else ""))
    return out


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(errors, dict):
        for key, value in sorted(errors.items(), key=lambda kv: str(kv[0])):
            where = f"{prefix}.{key}" if prefix else str(key)
            out.extend(flatten_errors(value, where))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict | list):
                out.extend(flatten_errors(item, prefix))
            else:
                out.append(f"{prefix}: {item}")
    else:
        out.append(f"{prefix}: {errors}")
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into ``tp``; tolerant of ``dvc exp`` writing 5e-05 as a string."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, where)
    if tp is float:
        return float(value)
    if tp is int and isinstance(value, str):
        return int(value)
    return value


# Keys an earlier labmake read, and what to write now: an old params.yaml gets the fix, not
# only "unknown field".
_GROUNDED = (
    "a grounded request now writes generate.grounded.contexts_per_request new contexts, each "
    "with one question and its answer: delete questions_per_context"
)
REMOVED_KEYS = {
    "generate.grounded.questions_per_context": _GROUNDED,
    "try.questions_per_context": _GROUNDED,
}


def from_mapping(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively, with types from its annotations."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if key_of(f) in data:
            kwargs[f.name] = _coerce(hints[f.name], data.pop(key_of(f)), f"{where}.{key_of(f)}")
    if data:
        raise ConfigError(
            f"params.yaml: unknown key(s) {sorted(data)} in '{where.lstrip('.') or '/'}'"
        )
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise _located(cls, where, exc) from None


def _located(cls: type, where: str, exc: ConfigError) -> ConfigError:
    """A section's own check names its keys by the section's usual place (``SECTION``, e.g.
    "teacher"); built elsewhere ("evaluate.judge"), the message names them there."""
    home, here = getattr(cls, "SECTION", ""), where.strip(".")
    if not home or not here or here == home:
        return exc
    return ConfigError(str(exc).replace(f"{home}.", f"{here}."))
