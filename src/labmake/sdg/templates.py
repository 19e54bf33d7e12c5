"""Prompt templates: Jinja2 files, rendered strictly (a missing value is an error, not "").

Every template -- shipped, or from ``generate.pipelines_dir`` -- renders in Jinja2's immutable
sandbox: a template reads the values it is given and calls safe filters, and nothing else. Plain
Jinja2 lets ``{{ cycler.__init__.__globals__.os }}`` reach Python's ``os`` module, which would
make a pipeline folder (or a prompt edited by mistake) a way to run commands on the build host
during ``labmake plan``. A template that tries is a :class:`TemplateProblem`, as is one that
does not parse: one message naming the file, never a traceback.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
)
from jinja2 import TemplateNotFound as TemplateNotFound
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

# Values every template may use besides its row's columns.
LEAF_GLOBALS = ("leaf", "kind", "grounded", "task_description")


class TemplateProblem(TemplateError, ValueError):
    """A template does not parse, or did something the sandbox forbids; names the file.

    A TemplateError, so that a pipeline check words it with its block; a ValueError, so that a
    stage or ``labmake plan`` reports it as a message."""


@cache
def environment(override_dir: str | None = None) -> ImmutableSandboxedEnvironment:
    """Templates from ``<override_dir>/prompts/`` first (when given), then the shipped ones."""
    loaders: list[Any] = []
    if override_dir is not None:
        loaders.append(FileSystemLoader(str(Path(override_dir) / "prompts")))
    loaders.append(PackageLoader("labmake.sdg", "prompts"))
    return ImmutableSandboxedEnvironment(
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
    try:
        parsed = env.parse(source(name, override_dir), name)
    except TemplateSyntaxError as exc:
        raise _problem(name, exc) from None
    return set(meta.find_undeclared_variables(parsed))


def render(name: str, values: dict[str, Any], override_dir: str | None = None) -> str:
    try:
        text = environment(override_dir).get_template(name).render(**values)
    except TemplateNotFound:
        raise
    except TemplateError as exc:
        raise _problem(name, exc) from None
    # Trailing whitespace would make the teacher continue after a space it did not write.
    return text.rstrip()


def _problem(name: str, exc: TemplateError) -> TemplateProblem:
    if isinstance(exc, TemplateProblem):
        return exc
    if isinstance(exc, SecurityError):
        return TemplateProblem(
            f"template {name} tried something templates may not do ({(exc.message or '').rstrip('.')}); "
            "templates "
            "render in a sandbox and may only read the values they are given: remove that "
            "expression"
        )
    if isinstance(exc, TemplateSyntaxError):
        return TemplateProblem(
            f"template {name}, line {exc.lineno}: Jinja syntax error: {exc.message}; fix the "
            "template"
        )
    return TemplateProblem(f"template {name}: {exc.message or type(exc).__name__}")
