"""Prompt templates: Jinja2 files, rendered strictly (a missing value is an error, not "")."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, meta
from jinja2 import TemplateNotFound as TemplateNotFound

# Values every template may use besides its row's columns.
LEAF_GLOBALS = ("leaf", "kind", "grounded", "task_description")


@cache
def environment(override_dir: str | None = None) -> Environment:
    """Templates from ``<override_dir>/prompts/`` first (when given), then the shipped ones."""
    loaders: list[Any] = []
    if override_dir is not None:
        loaders.append(FileSystemLoader(str(Path(override_dir) / "prompts")))
    loaders.append(PackageLoader("labmake.sdg", "prompts"))
    return Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def source(name: str, override_dir: str | None = None) -> str:
    env = environment(override_dir)
    text, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
    return text


def sha256(name: str, override_dir: str | None = None) -> str:
    return hashlib.sha256(source(name, override_dir).encode("utf-8")).hexdigest()


def variables(name: str, override_dir: str | None = None) -> set[str]:
    """The names a template reads from its context (columns and leaf globals)."""
    env = environment(override_dir)
    return set(meta.find_undeclared_variables(env.parse(source(name, override_dir))))


def render(name: str, values: dict[str, Any], override_dir: str | None = None) -> str:
    # Trailing whitespace would make the teacher continue after a space it did not write.
    return environment(override_dir).get_template(name).render(**values).rstrip()
