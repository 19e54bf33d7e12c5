"""Progress with an ETA for the long stages (generate, train).

On a terminal: a rich progress bar. Otherwise (a log file, a SLURM job's output, CI), where a
bar would print nothing until the end: a log line at every tenth of the work, with the ETA.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("labmake.core.progress")

Advance = Callable[..., None]  # advance(**fields): one unit done; fields are shown beside the bar


@contextlib.contextmanager
def track(description: str, total: int, **fields: Any) -> Iterator[Advance]:
    if sys.stderr.isatty():
        with _rich_bar(description, total, fields) as advance:
            yield advance
    else:
        yield _log_lines(description, total)


@contextlib.contextmanager
def _rich_bar(description: str, total: int, fields: dict[str, Any]) -> Iterator[Advance]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    extra = [TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields]
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, **fields)

        def advance(**values: Any) -> None:
            bar.update(task, advance=1, **values)

        yield advance


def _log_lines(description: str, total: int) -> Advance:
    start = time.monotonic()
    done = 0
    next_report = 1

    def advance(**values: Any) -> None:
        nonlocal done, next_report
        done += 1
        if done < next_report and done != total:
            return
        next_report = done + max(1, total // 10)
        elapsed = time.monotonic() - start
        eta = elapsed / done * (total - done)
        shown = "".join(f", {k} {v}" for k, v in values.items())
        log.info(
            "%s: %d/%d (%.0f%%)%s, %.0f s elapsed, ETA %.0f s",
            description,
            done,
            total,
            100 * done / max(total, 1),
            shown,
            elapsed,
            eta,
        )

    return advance
