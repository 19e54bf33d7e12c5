"""Logging and error handling for the rule scripts and the CLI.

A stage's expected failures (bad input, a teacher that cannot start, filters that kept nothing)
are shown as one clear message, never a traceback; unexpected ones keep their traceback, in the
rule's log file, for a bug report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

# Failures of the user's input or environment: a message is enough, and better than a traceback.
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    PermissionError,
    ValueError,
    RuntimeError,
)


def setup(
    log_file: str | Path | None = None, level: int = logging.INFO, append: bool = False
) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        if not append:
            Path(log_file).write_text("", encoding="utf-8")
        # Always opened to append: processes this one starts may add to the same file, and
        # O_APPEND keeps their lines from overwriting each other's.
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def stage(
    log_file: str | Path | None,
    name: str,
    threads: int | None = None,
    *,
    append: bool = False,
    level: int = logging.INFO,
) -> Iterator[None]:
    """Run one rule's body: log to its file, cap threads, turn expected errors into a message.

    ``append``: a process that a rule's script started adds to the script's log."""
    setup(log_file, level, append)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        if "torch" in sys.modules:  # already imported by the stage's module: tell it directly
            sys.modules["torch"].set_num_threads(threads)
    try:
        yield
    except EXPECTED_ERRORS as exc:
        print(f"\nlabmake {name}: error: {exc}", file=sys.stderr)
        if log_file:
            with open(log_file, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        sys.exit(1)
