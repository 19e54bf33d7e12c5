"""Running a try's Snakemake and showing where it is: every job with an ETA, then the times.

Snakemake runs the build's Snakefile in the try folder; its output is read line by line (what
it plans, each job it starts and finishes, the progress lines the long stages log with their
own ETA) and kept in the try folder's ``try.log``. A job's expected time comes from the
Snakemake benchmark files of an earlier run of the same job (the try's own, else the build's),
else from a figure measured on a 2-core machine.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labmake.core import paths

HEADER = re.compile(r"^(?:local)?rule (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")
PROGRESS = re.compile(
    r"labmake\.core\.progress: (?P<what>.+?): (?P<done>\d+)/(?P<total>\d+) \(\d+%\)"
    r"(?P<fields>.*?), \d+ s elapsed, ETA (?P<eta>\d+) s"
)
ERROR = re.compile(r"^labmake [\w -]+: error: (.+)")
STATS_ROW = re.compile(r"^(\w+)\s+(\d+)$")
# Seconds of one job on a 2-core machine with the embedded model and the try's budget: the
# guess before any run of it was timed.
DEFAULT_SECONDS = {
    "seeds": 2,
    "generate": 45,
    "filter": 1,
    "mix": 1,
    "base_model": 10,
    "train": 60,
    "evaluate": 30,
    "generate_multiple_choice": 60,
    "multiple_choice": 1,
}


@dataclass
class JobRun:
    jobid: str
    rule: str
    started: float
    wildcards: dict[str, str] = field(default_factory=dict)
    finished: float | None = None
    detail: str = ""  # the latest progress line of the job, shortened
    eta: float | None = None  # the job's own ETA (from its progress lines), when known
    expected: float | None = None

    @property
    def name(self) -> str:
        """The name Snakemake's benchmark file of the job carries (its wildcard, or "all")."""
        return next(iter(self.wildcards.values()), "all")

    @property
    def label(self) -> str:
        return self.rule if self.name == "all" else f"{self.rule} {self.name}"

    def seconds(self, now: float) -> float:
        return (self.finished or now) - self.started

    def remaining(self, now: float) -> float:
        if self.eta is not None:
            return self.eta
        return max((self.expected or 0.0) - self.seconds(now), 0.0)


@dataclass
class Stream:
    """What Snakemake's output says: the jobs planned, started, finished, and the errors."""

    planned: Counter[str] = field(default_factory=Counter)
    jobs: dict[str, JobRun] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    nothing_to_do: bool = False
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    _in_stats: bool = False
    _pending: JobRun | None = None

    def feed(self, line: str, now: float) -> tuple[str, JobRun] | None:
        """Take one line; returns (event, job) when a job started, finished or progressed."""
        line = line.rstrip("\n")
        self.tail.append(line)
        if self._pending is not None and not line.startswith(" "):
            job, self._pending = self._pending, None
            self.jobs[job.jobid] = job
            return "started", job
        if self._pending is not None:
            key, _, value = line.strip().partition(": ")
            if key == "jobid":
                self._pending.jobid = value
            elif key == "wildcards":
                pairs = (p.split("=", 1) for p in value.split(", ") if "=" in p)
                self._pending.wildcards = dict(pairs)
            return None
        return self._top_line(line, now)

    def _top_line(self, line: str, now: float) -> tuple[str, JobRun] | None:
        if line.startswith("Job stats:"):
            self._in_stats = True
        elif self._in_stats and (row := STATS_ROW.match(line.strip())):
            if row.group(1) == "total":
                self._in_stats = False
            else:
                self.planned[row.group(1)] = int(row.group(2))
        elif header := HEADER.match(line.strip()):
            self._pending = JobRun("?", header.group(1), now)
        elif done := FINISHED.match(line.strip()):
            job = self.jobs.get(done.group(1))
            if job is not None:
                job.finished, job.eta, job.detail = now, None, ""
                return "finished", job
        elif progress := PROGRESS.search(line):
            return self._progress(progress)
        elif error := ERROR.search(line.strip()):
            self.errors.append(error.group(1))
        elif "Nothing to be done" in line:
            self.nothing_to_do = True
        return None

    def _progress(self, match: re.Match[str]) -> tuple[str, JobRun] | None:
        running = [j for j in self.jobs.values() if j.finished is None]
        what = match.group("what")
        job = next((j for j in running if j.name != "all" and j.name in what), None)
        job = job or next((j for j in reversed(running) if j.rule in ("generate", "train")), None)
        if job is None:
            return None
        # "<leaf>: <block>" for generate, "train <phase>" for train: the block is news.
        step = what.rsplit(": ", 1)[-1] + " " if ": " in what else ""
        job.detail = f"{step}{match.group('done')}/{match.group('total')}"
        job.eta = float(match.group("eta"))
        return "progress", job


class Estimates:
    """Expected seconds of a job: an earlier run of it, of its rule, or a measured guess."""

    def __init__(self, *roots: Path) -> None:
        self.roots = roots

    @staticmethod
    def _seconds(tsv: Path) -> float | None:
        try:
            lines = tsv.read_text(encoding="utf-8").splitlines()
            return float(lines[1].split("\t")[0])
        except (OSError, IndexError, ValueError):
            return None

    def expected(self, rule: str, name: str) -> float:
        for root in self.roots:
            own = self._seconds(root / paths.benchmark(rule, name))
            if own is not None:
                return own
        for root in self.roots:
            folder = root / paths.BENCHMARKS / rule
            seen = [s for p in folder.rglob("*.tsv") if (s := self._seconds(p)) is not None]
            if seen:
                return statistics.median(seen)
        return float(DEFAULT_SECONDS.get(rule, 10))

    def remaining(self, stream: Stream, now: float) -> float:
        """Seconds left: the running jobs' and the planned jobs not started yet (one at a time:
        the stages use both cores)."""
        started = Counter(j.rule for j in stream.jobs.values())
        left = sum(j.remaining(now) for j in stream.jobs.values() if j.finished is None)
        for rule, count in stream.planned.items():
            left += max(count - started[rule], 0) * self.expected(rule, "all")
        return left


@dataclass
class StepRun:
    title: str
    stream: Stream
    seconds: float
    returncode: int


def snakemake_binary() -> str:
    return shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")


def run_step(
    title: str,
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    log: Path,
    on_event: Callable[[str, JobRun | None, Stream], None],
) -> StepRun:
    """Run one Snakemake invocation, feeding ``on_event`` as jobs start, progress and end."""
    stream = Stream()
    started = time.monotonic()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n### {title}: {' '.join(command)}\n")
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        on_event("begin", None, stream)
        try:
            for line in proc.stdout:
                out.write(line)
                event = stream.feed(line, time.monotonic())
                if event is not None:
                    on_event(event[0], event[1], stream)
            returncode = proc.wait()
        finally:
            on_event("end", None, stream)
            if proc.poll() is None:  # interrupted: Snakemake got the same Ctrl-C; let it stop
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.terminate()
    return StepRun(title, stream, time.monotonic() - started, returncode)
