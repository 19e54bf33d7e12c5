"""Checks of params.yaml that no single key's schema can say, called from the config classes.

Each raises :class:`~labmake.core.schema.ConfigError` with one message naming the key and the
fix. A section's message names its keys as ``teacher.*`` or ``generate.*``; where the same
section sits elsewhere (``evaluate.judge`` is a teacher section) the config machinery rewrites
the prefix, so the message names the key the user wrote.
"""

from __future__ import annotations

from pathlib import Path
from string import Formatter
from typing import Any
from urllib.parse import urlsplit

from labmake.core.schema import ConfigError


def check_student(cfg: Any) -> None:
    if cfg.gguf is not None and cfg.hf is not None:
        raise ConfigError(
            f"params.yaml: student.gguf ({cfg.gguf}) and student.hf ({cfg.hf}) are both set; the "
            "student is one model: keep the one you mean and set the other to null (both null: "
            "the embedded Gemma 3 270M)"
        )


def check_teacher(cfg: Any) -> None:
    if cfg.max_tokens >= cfg.n_ctx:
        raise ConfigError(
            f"params.yaml: teacher.max_tokens ({cfg.max_tokens}) must be below "
            f"teacher.n_ctx ({cfg.n_ctx}): a request's prompt and answer share the context"
        )
    if cfg.base_url is not None:
        parts = urlsplit(cfg.base_url)
        if parts.username is not None or parts.password is not None:
            host = parts.hostname or ""
            raise ConfigError(
                "params.yaml: teacher.base_url carries a user name or password "
                f"(user:password@{host}); remove it from the URL and put the key in an "
                "environment variable whose NAME goes in teacher.api_key_env (the URL is "
                "printed in logs and in the build report; the variable never is)"
            )
    if cfg.serve is not None:
        _check_serve(cfg)


# What labmake fills in in teacher.serve's argv (labmake.teacher.served renders them).
SERVE_PLACEHOLDERS = ("port", "gguf")


def serve_placeholders(item: str) -> list[str]:
    """The ``{...}`` fields in one argv item of teacher.serve, as written (``{port:d}`` stays
    that: not a placeholder); ``{{`` and ``}}`` are literal braces. ValueError for a lone one."""
    fields = []
    for _text, name, spec, conversion in Formatter().parse(item):
        if name is not None:
            fields.append(
                name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            )
    return fields


def _check_serve(cfg: Any) -> None:
    """teacher.serve: labmake starts that server itself, so it owns base_url and the port."""
    if cfg.backend != "openai":
        raise ConfigError(
            f"params.yaml: teacher.serve starts an OpenAI-compatible server, which only "
            f"teacher.backend openai talks to (it is {cfg.backend!r}); set teacher.backend: "
            "openai, or remove teacher.serve"
        )
    if cfg.base_url is not None:
        raise ConfigError(
            "params.yaml: teacher.serve and teacher.base_url are both set; with serve, labmake "
            "picks a free port and talks to http://127.0.0.1:{port}/v1 itself: set "
            "teacher.base_url: null (or remove teacher.serve to use a server you run)"
        )
    known = " and ".join(f"{{{p}}}" for p in SERVE_PLACEHOLDERS)
    found: set[str] = set()
    for i, item in enumerate(cfg.serve):
        try:
            names = serve_placeholders(item)
        except ValueError as exc:
            raise ConfigError(
                f"params.yaml: teacher.serve[{i}] {item!r}: {exc}; the only placeholders are "
                f"{known}; write a literal brace as {{{{ or }}}}"
            ) from None
        unknown = sorted(set(names) - set(SERVE_PLACEHOLDERS))
        if unknown:
            raise ConfigError(
                f"params.yaml: teacher.serve[{i}] {item!r} has the unknown placeholder(s) "
                f"{', '.join(f'{{{n}}}' for n in unknown)}; the only ones are {known} (write a "
                "literal brace as {{ or }})"
            )
        found.update(names)
    if "port" not in found:
        raise ConfigError(
            "params.yaml: teacher.serve never passes {port} to the server; labmake picks a "
            'free port and waits for the server there: add it, e.g. "--port", "{port}"'
        )


def check_generate(cfg: Any) -> None:
    if cfg.pipelines_dir is not None and not Path(cfg.pipelines_dir).is_dir():
        raise ConfigError(
            f"params.yaml: generate.pipelines_dir {cfg.pipelines_dir!r} is not a folder "
            f"(looked in {Path(cfg.pipelines_dir).absolute()}); create it with your "
            "<name>.yaml pipelines and prompts/, fix the path (relative to the folder the "
            "build runs in), or set it to null"
        )


def read_params_text(path: Path) -> str:
    """params.yaml's text, or one message saying why it cannot be read."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a file; give the path of params.yaml")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; run from the repository root or pass --params"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}); check its permissions"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path}: is not UTF-8 (byte 0x{raw[exc.start]:02x} on line {line}); save it again "
            "as UTF-8 (it was probably saved as Latin-1 or Windows-1252)"
        ) from None
