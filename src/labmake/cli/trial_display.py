"""What ``labmake try`` shows while it runs: each job with its ETA, then where the time went.

On a terminal, a live table (rich); otherwise (a log, CI, a benchmark) a line when a job starts
and ends and a progress line at most every few seconds, each with the step's ETA.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from labmake.cli.trial_run import Estimates, JobRun, StepRun, Stream

LINE_EVERY_S = 5.0  # at most one progress line per job this often, off a terminal


def clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Display:
    """Receives a step's events (see :func:`labmake.cli.trial_run.run_step`)."""

    def __init__(self, estimates: Estimates, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.estimates = estimates
        self.live: Any = None
        self.title = ""
        self.stream = Stream()
        self.started = time.monotonic()
        self._said: dict[str, float] = {}

    # The callback for run_step.
    def __call__(self, event: str, job: JobRun | None, stream: Stream) -> None:
        self.stream = stream
        now = time.monotonic()
        if event == "begin":
            self.started = now
            if self.out.isatty():
                self._start_live()
        elif event == "end":
            self._stop_live()
        elif job is not None:
            if event == "started":
                job.expected = self.estimates.expected(job.rule, job.name)
            if self.live is None:
                self._line(event, job, now)

    def begin(self, title: str) -> None:
        self.title = title
        print(f"labmake try: {title}", file=self.out, flush=True)

    def _eta(self, now: float) -> str:
        return f"ETA ~{clock(self.estimates.remaining(self.stream, now))}"

    def _line(self, event: str, job: JobRun, now: float) -> None:
        if event == "started":
            text = f"  > {job.label} (usually ~{clock(job.expected or 0)}; step {self._eta(now)})"
        elif event == "finished":
            text = f"  done {job.label} in {clock(job.seconds(now))} (step {self._eta(now)})"
        else:
            if now - self._said.get(job.jobid, 0.0) < LINE_EVERY_S:
                return
            text = (
                f"    {job.label}: {job.detail}, ETA {clock(job.eta or 0)} (step {self._eta(now)})"
            )
        self._said[job.jobid] = now
        print(text, file=self.out, flush=True)

    # ----------------------------------------------------------------------- on a terminal

    def _start_live(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.live = Live(
            get_renderable=self._table,
            console=Console(file=self.out),
            refresh_per_second=4,
            transient=False,
        )
        self.live.start()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _table(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        now = time.monotonic()
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(width=2)
        table.add_column()
        table.add_column(justify="right")
        table.add_column(style="dim")
        for job in self.stream.jobs.values():
            if job.finished is not None:
                table.add_row("[green]✓[/]", escape(job.label), clock(job.seconds(now)), "")
            else:
                left = f"ETA {clock(job.remaining(now))}"
                detail = f"{job.detail}, {left}" if job.detail else left
                table.add_row("[cyan]▶[/]", escape(job.label), clock(job.seconds(now)), detail)
        waiting = sum(self.stream.planned.values()) - len(self.stream.jobs)
        footer = f"{self.title}: {clock(now - self.started)} elapsed, {self._eta(now)}"
        if waiting > 0:
            footer += f", {waiting} job(s) waiting"
        table.add_row("", f"[bold]{escape(footer)}[/]", "", "")
        return table


def time_summary(
    steps: list[StepRun],
    before: list[tuple[str, float]],
    after: list[tuple[str, float]],
    total: float,
    out: TextIO,
) -> None:
    """Where the time went: each job, Snakemake's own share, the rest; then the total."""
    rows = list(before)
    for step in steps:
        jobs = [j for j in step.stream.jobs.values() if j.finished is not None]
        rows += [(j.label, j.seconds(j.finished or 0.0)) for j in jobs]
        busy = _covered([(j.started, j.finished or j.started) for j in jobs])
        rows.append(
            (f"snakemake, {step.title.split(':')[0]} (plan, start jobs)", step.seconds - busy)
        )
    rows += after
    width = max(len(label) for label, _ in rows) + 2
    print(f"\nwhere the time went ({clock(total)} in all):", file=out)
    for label, seconds in rows:
        print(f"  {label:<{width}}{seconds:7.1f} s", file=out)


def _covered(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of ``spans`` (jobs may run side by side)."""
    covered, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            covered += stop - max(start, end)
            end = stop
    return covered
