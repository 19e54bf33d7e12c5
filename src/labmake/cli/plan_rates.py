"""Rates for ``labmake plan``: seconds per unit of work, measured or given, and the time
per stage they give the jobs a build would run.

Measured from a finished build: Snakemake's benchmark of every job (``build/benchmarks/{rule}/
...tsv``, wall seconds in column ``s``) put beside what the job did, read from its own outputs
(no log parsing): the teacher requests a generate job sent are named in its records'
provenance, the steps and tokens a training phase ran are in its ``metrics.json``. The rates
are then plain ratios over the whole build (seconds over requests, over steps), so that a job's
fixed start-up (loading a model) is spread over its work, as it will be in the next build; the
other rules get the median of their jobs' seconds. A build that answered its teacher requests
from the cache (a rebuild) measures fast requests: measure on a fresh build.

Given: a YAML file written for other hardware (``--rates``), whose keys replace the measured
ones: ``teacher_tokens_per_s``, ``teacher_seconds_per_request``, ``train_tokens_per_s``,
``train_seconds_per_step`` and ``seconds_per_job: {rule: seconds}``.

Time is in job-seconds, summed over jobs: jobs that run side by side end sooner than the sum.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from labmake.core import artifacts, paths

# The rules whose work is teacher requests, and the outputs whose records name them.
TEACHER_OUTPUTS = {
    "generate": (paths.GENERATED, paths.AUGMENTED),
    "generate_multiple_choice": (paths.MC_LEAF,),
}
TEACHER_RULES = tuple(TEACHER_OUTPUTS)
TRAIN_RULE = "train"
PHASE_METRICS = "metrics.json"  # in each phase's folder (labmake.training.outputs.METRICS)
RATE_KEYS = (
    "teacher_tokens_per_s",
    "teacher_seconds_per_request",
    "train_tokens_per_s",
    "train_seconds_per_step",
)
JOB_KEY = "seconds_per_job"


class RatesError(ValueError):
    """A rates file that cannot be used as written (a usage error)."""


@dataclass(frozen=True)
class Rates:
    """Rates by name (:data:`RATE_KEYS`, and ``train_tokens_per_step`` when measured), seconds
    per job by rule, what each rate rests on (for the reader), and which keys the user gave."""

    source: str
    values: dict[str, float] = field(default_factory=dict)
    seconds_per_job: dict[str, float] = field(default_factory=dict)
    basis: dict[str, str] = field(default_factory=dict)
    given: frozenset[str] = frozenset()  # RATE_KEYS given, and "seconds_per_job.{rule}"

    def pick(self, *keys: str) -> str | None:
        """The first of ``keys`` the user gave, else the first measured: a rate the user wrote
        for their hardware beats a measured one, and among equals the order of ``keys`` does."""
        for key in keys:
            if key in self.given:
                return key
        return next((key for key in keys if key in self.values), None)


def build_path(build_dir: Path, template: str) -> Path:
    """A build artifact's path (``build/...``, filled in) under another build folder."""
    return Path(build_dir) / PurePosixPath(template).relative_to(paths.BUILD)


def benchmark_seconds(build_dir: Path, folder: str) -> dict[str, float]:
    """Wall seconds of each job of one rule, by job name (the file's path under the rule's
    benchmark folder, without ``.tsv``: the leaf, the phase, ``all``). A job benchmarked with
    repeats counts by its mean; a file without a number in ``s`` is left out."""
    base = build_path(build_dir, paths.benchmark(folder, "x")).parent
    out: dict[str, float] = {}
    for tsv in sorted(base.rglob("*.tsv")) if base.is_dir() else ():
        try:
            with open(tsv, encoding="utf-8", newline="") as fh:
                seconds = [float(row["s"]) for row in csv.DictReader(fh, delimiter="\t")]
        except (OSError, KeyError, TypeError, ValueError):
            continue
        if seconds:
            out[tsv.relative_to(base).with_suffix("").as_posix()] = statistics.fmean(seconds)
    return out


def teacher_requests(build_dir: Path, rule: str, leaf: str) -> int | None:
    """The teacher requests a finished teacher job sent, or None when its outputs are gone.

    Each record names the seed of every request made for it, by block (``seeds``); a request
    several records share (a grounded context, a reply with several pairs) counts once.
    """
    sent: set[tuple[str, Any]] = set()
    for template in TEACHER_OUTPUTS[rule]:
        path = build_path(build_dir, template.format(leaf=leaf))
        try:
            records = artifacts.read_jsonl(path)
        except FileNotFoundError:
            if template == paths.AUGMENTED:
                continue  # an older build wrote no rewrites file
            return None
        except (OSError, ValueError):
            return None
        for record in records:
            seeds = record.get("seeds") if isinstance(record, dict) else None
            sent.update((block, str(seed)) for block, seed in (seeds or {}).items())
    return len(sent)


def train_work(build_dir: Path, phase: str) -> tuple[int, int] | None:
    """(optimizer steps, input tokens) a finished phase ran, from its metrics.json."""
    folder = build_path(build_dir, paths.CHECKPOINT_DIR.format(phase=phase))
    try:
        metrics = artifacts.read_json(folder / PHASE_METRICS)
        return int(metrics["steps"]), int(sum(metrics.get("input_tokens", [])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def measured_rates(build_dir: Path, benchmark_dirs: dict[str, str]) -> Rates | None:
    """The rates a finished build measured (rule -> its benchmark folder, as the rules name
    it); None when the folder holds no benchmark at all."""
    seconds = {rule: benchmark_seconds(build_dir, d) for rule, d in benchmark_dirs.items()}
    seconds = {rule: jobs for rule, jobs in seconds.items() if jobs}
    if not seconds:
        return None
    values: dict[str, float] = {}
    n = sum(len(jobs) for jobs in seconds.values())
    basis = {"jobs": f"{n} benchmarked jobs of {len(seconds)} rules"}
    for key, rate in (
        ("teacher", _teacher_rate(build_dir, seconds)),
        ("train", _train_rate(build_dir, seconds.get(TRAIN_RULE, {}))),
    ):
        if rate is not None:
            values |= rate[0]
            basis[key] = rate[1]
    per_job = {rule: statistics.median(jobs.values()) for rule, jobs in seconds.items()}
    return Rates(f"measured in {build_dir}", values, per_job, basis)


def _teacher_rate(
    build_dir: Path, seconds: dict[str, dict[str, float]]
) -> tuple[dict[str, float], str] | None:
    """Seconds per teacher request over every teacher job whose records are still there."""
    total_s, total_requests, jobs = 0.0, 0, 0
    for rule in TEACHER_OUTPUTS:
        for leaf, s in seconds.get(rule, {}).items():
            requests = teacher_requests(build_dir, rule, leaf)
            if requests:
                total_s, total_requests, jobs = total_s + s, total_requests + requests, jobs + 1
    if not total_requests:
        return None
    rate = {"teacher_seconds_per_request": total_s / total_requests}
    return rate, f"{total_requests} requests in {jobs} jobs, {total_s:.0f} s"


def _train_rate(build_dir: Path, seconds: dict[str, float]) -> tuple[dict[str, float], str] | None:
    """Seconds per optimizer step, and tokens per second and per step, over the phases."""
    total_s, steps, tokens = 0.0, 0, 0
    for phase, s in seconds.items():
        work = train_work(build_dir, phase)
        if work is not None and work[0] > 0:
            total_s, steps, tokens = total_s + s, steps + work[0], tokens + work[1]
    if not steps:
        return None
    rate = {"train_seconds_per_step": total_s / steps}
    if tokens:
        rate |= {"train_tokens_per_s": tokens / total_s, "train_tokens_per_step": tokens / steps}
    return rate, f"{steps} steps, {tokens} tokens in {len(seconds)} jobs, {total_s:.0f} s"


def read_rates_file(path: Path) -> dict[str, Any]:
    """A rates file as the user wrote it, checked: known keys, positive numbers."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RatesError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise RatesError(f"{path}: expected a mapping of rates")
    unknown = sorted(set(data) - {*RATE_KEYS, JOB_KEY})
    if unknown:
        known = ", ".join((*RATE_KEYS, JOB_KEY))
        raise RatesError(f"{path}: unknown keys {unknown}; known: {known}")
    jobs = data.get(JOB_KEY) or {}
    if not isinstance(jobs, dict):
        raise RatesError(f"{path}: {JOB_KEY} must map rule names to seconds")
    for key, value in [*((k, data[k]) for k in RATE_KEYS if k in data), *jobs.items()]:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise RatesError(f"{path}: {key} must be a positive number, not {value!r}")
    return data


def combine(
    measured: Rates | None, given: dict[str, Any] | None, given_path: Path | None
) -> Rates | None:
    """The user's rates over the measured ones, key by key; None when there are neither."""
    if not given:
        return measured
    base = measured or Rates(source="")
    mine = {k: float(given[k]) for k in RATE_KEYS if k in given}
    jobs = {str(rule): float(s) for rule, s in (given.get(JOB_KEY) or {}).items()}
    source = f"{given_path}" + (f" over {base.source}" if measured else "")
    keys = frozenset([*mine, *(f"{JOB_KEY}.{rule}" for rule in jobs)])
    per_job = base.seconds_per_job | jobs
    return Rates(source, base.values | mine, per_job, dict(base.basis), keys)


STAGES = ("generate", "train", "evaluate", "other")
EVALUATE_RULES = frozenset(
    {"retention_reference", "evaluate", "lm_eval", "multiple_choice", "report"}
)


@dataclass(frozen=True)
class Work:
    """What the jobs do, beyond their number: the teacher work of the leaves priced (upper
    bound and first round), the teacher jobs those leaves make, and per training phase in
    order its steps (None: set by the data) and its most tokens per step."""

    requests: int = 0
    first_round_requests: int = 0
    tokens: int = 0
    first_round_tokens: int = 0
    teacher_jobs: int = 0
    phases: tuple[tuple[int | None, int], ...] = ()


def stage_of(rule: str) -> str:
    if rule in TEACHER_RULES:
        return "generate"
    if rule == TRAIN_RULE:
        return "train"
    return "evaluate" if rule in EVALUATE_RULES else "other"


def price(
    jobs: dict[str, int], work: Work, rates: Rates | None, idle: frozenset[str] = frozenset()
) -> dict[str, dict[str, Any]]:
    """Per stage: its jobs and, with rates, its seconds (``seconds_low`` below them when the
    teacher's work is a range: first round to the bound), how they were priced, and the jobs
    no rate covers (left out of the sum, never guessed); ``idle`` rules run nothing (rule
    all) and cost nothing."""
    stages: dict[str, dict[str, Any]] = {s: {"jobs": 0} for s in STAGES}
    for rule, n in jobs.items():
        stages[stage_of(rule)]["jobs"] += n
    if rates is None:
        return stages
    for stage in stages.values():
        stage |= {"seconds": 0.0, "seconds_low": 0.0, "unpriced_jobs": {}, "how": []}
    for rule, n in jobs.items():
        if rule not in TEACHER_RULES:
            _add(stages[stage_of(rule)], rule, _rule_seconds(rule, n, work, rates, idle))
    teacher = {rule: jobs[rule] for rule in TEACHER_RULES if jobs.get(rule)}
    if teacher:
        _add(stages["generate"], TEACHER_RULES[0], _teacher_seconds(teacher, work, rates))
    for stage in stages.values():
        stage["seconds"] = round(stage["seconds"], 1)
        stage["seconds_low"] = round(stage["seconds_low"], 1)
    return stages


Cost = tuple[float, float, int, str]  # low and high seconds, jobs left unpriced, how


def _add(stage: dict[str, Any], rule: str, cost: Cost) -> None:
    low, high, unpriced, how = cost
    stage["seconds_low"] += low
    stage["seconds"] += high
    if unpriced:
        stage["unpriced_jobs"][rule] = stage["unpriced_jobs"].get(rule, 0) + unpriced
    if how:
        stage["how"].append(how)


def _rule_seconds(rule: str, n: int, work: Work, rates: Rates, idle: frozenset[str]) -> Cost:
    """A rule's jobs at its seconds per job (training by its steps); a rule with nothing
    to run costs nothing; one without a rate is left unpriced."""
    if rule == TRAIN_RULE and f"{JOB_KEY}.{rule}" not in rates.given:
        return _train_seconds(n, work, rates)
    per_job = rates.seconds_per_job.get(rule)
    if per_job is not None:
        return n * per_job, n * per_job, 0, ""
    return (0.0, 0.0, 0, "") if rule in idle else (0.0, 0.0, n, "")


def _teacher_seconds(jobs: dict[str, int], work: Work, rates: Rates) -> Cost:
    """The priced leaves' teacher work at the teacher's rate (the jobs at their seconds per
    job when the user gave those, or when there is no teacher rate). Teacher jobs beyond
    those leaves' (an unchanged leaf re-run for a knob or for code) are left unpriced: the
    teacher cache may hold all their requests."""
    key = rates.pick("teacher_tokens_per_s", "teacher_seconds_per_request")
    if key is None or any(f"{JOB_KEY}.{rule}" in rates.given for rule in jobs):
        costs = [(rule, n, rates.seconds_per_job.get(rule)) for rule, n in jobs.items()]
        seconds = sum(n * s for _, n, s in costs if s is not None)
        return seconds, seconds, sum(n for _, n, s in costs if s is None), ""
    beyond = max(0, sum(jobs.values()) - work.teacher_jobs)
    rate = rates.values[key]
    if key == "teacher_tokens_per_s":
        how = f"{work.first_round_tokens}-{work.tokens} tokens / {rate:g} tokens/s"
        return work.first_round_tokens / rate, work.tokens / rate, beyond, how
    how = f"{work.first_round_requests}-{work.requests} requests x {rate:.2f} s/request"
    return work.first_round_requests * rate, work.requests * rate, beyond, how


def _train_seconds(n: int, work: Work, rates: Rates) -> Cost:
    """The last n phases (a phase re-runs every later one) at the training rate: steps x
    seconds per step, or steps x tokens per step / tokens per second (tokens per step as
    measured, else the phase's most); a phase whose steps the data decide (no max_steps) takes
    a measured train job's median."""
    key = rates.pick("train_tokens_per_s", "train_seconds_per_step")
    seconds, unpriced, by_job, steps_priced, tokens = 0.0, 0, 0, 0, 0.0
    for steps, most_tokens in work.phases[-n:] if n else ():
        if steps is not None and key is not None:
            per_step = rates.values.get("train_tokens_per_step", float(most_tokens))
            rate = rates.values[key]
            seconds += steps * (per_step / rate if key == "train_tokens_per_s" else rate)
            steps_priced, tokens = steps_priced + steps, tokens + steps * per_step
        elif TRAIN_RULE in rates.seconds_per_job:
            seconds, by_job = seconds + rates.seconds_per_job[TRAIN_RULE], by_job + 1
        else:
            unpriced += 1
    how = []
    if steps_priced and key == "train_tokens_per_s":
        rate = rates.values[key]
        how.append(f"{steps_priced} steps, ~{tokens:.0f} tokens at {rate:.1f} tokens/s")
    elif steps_priced and key is not None:
        how.append(f"{steps_priced} steps x {rates.values[key]:.2f} s/step")
    if by_job:
        how.append(f"{by_job} phase(s) without max_steps at a train job's median")
    return seconds, seconds, unpriced, "; ".join(how)
