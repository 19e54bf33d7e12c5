"""Checks of params.yaml that no single key's schema can say, called from the config classes.

Each raises :class:`~labmake.core.schema.ConfigError` with one message naming the key and the
fix. A section's message names its keys as ``teacher.*`` or ``generate.*``; where the same
section sits elsewhere (``evaluate.judge`` is a teacher section) the config machinery rewrites
the prefix, so the message names the key the user wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from labmake.core.schema import ConfigError


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
