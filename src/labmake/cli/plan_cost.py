"""What a build would run for ``labmake plan``: jobs per rule, SLURM allocations, and the
cost as text.

The jobs come from Snakemake's own dry run (``snakemake -n``, run as a subprocess with the
command line ``labmake build`` uses), since the DAG is what decides; when Snakemake cannot see
the build folder (``--build-dir`` elsewhere) or does not run, they are derived from params.yaml
and the leaves to redo, which sees leaf edits but not a changed knob or changed code.
What the rules are (their benchmark folder, job group, whether they run where Snakemake runs)
is read from the rule files themselves, so a renamed folder or a new group needs no edit here.
Their time is priced in :mod:`labmake.cli.plan_rates`.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from labmake.cli.workflow_command import snakemake_command
from labmake.core import paths

if TYPE_CHECKING:  # the config module is imported when a command runs, not when it is listed
    from labmake.core.config import BuildConfig

# Executors that run the jobs on this machine: no allocations to count.
LOCAL_EXECUTORS = frozenset({"local", "dryrun", "touch"})

_HEADER = re.compile(r"^(?:rule|checkpoint)\s+(\w+)\s*:")
_BENCHMARK = re.compile(
    r"\bbenchmark:\s*(?:paths\.benchmark\(\s*[\"'](\w+)[\"']|[\"']"
    + re.escape(paths.BENCHMARKS)
    + r"/(\w+)/)"
)
_GROUP = re.compile(r"^\s+group:\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_LOCAL = re.compile(r"^\s+localrule:\s*True\b", re.MULTILINE)
_RUNS = re.compile(r"^\s+(?:script|shell|run|wrapper|notebook|cwl):", re.MULTILINE)
_LOCALRULES = re.compile(r"^localrules:\s*(.+)$", re.MULTILINE)
_CODE = re.compile(r"\bcode\(\s*[\"'](\w+)[\"']\s*\)")
_JOB_COUNT = re.compile(r"^(\w+)\s+(\d+)\s*$")


class ProfileError(ValueError):
    """A profile that cannot be read as Snakemake would (a usage error)."""


@dataclass(frozen=True)
class Rule:
    name: str
    benchmark: str | None = None  # its folder under build/benchmarks
    group: str | None = None
    local: bool = False  # localrule: True (or listed in localrules:): never submitted
    runs: bool = True  # False for a rule with nothing to run (rule all)
    code: str | None = None  # the script whose code stamp it reads (one code_stamp job each)


@dataclass(frozen=True)
class Workflow:
    """The rules by name, as the rule files declare them."""

    rules: dict[str, Rule]


def read_workflow(project: Path) -> Workflow:
    """The rules of the Snakefile and rules/*.smk in ``project`` (empty when there are none)."""
    rules: dict[str, Rule] = {}
    local: set[str] = set()
    for path in [project / "Snakefile", *sorted((project / "rules").glob("*.smk"))]:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        local.update(n.strip() for m in _LOCALRULES.findall(text) for n in m.split(","))
        for name, body in _rule_blocks(text):
            rules[name] = _rule(name, body)
    rules = {n: replace(r, local=True) if n in local else r for n, r in rules.items()}
    return Workflow(rules)


def _rule_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(name, body) of each rule: from its header to the next line at the left margin."""
    name: str | None = None
    body: list[str] = []
    for line in [*text.splitlines(), "END"]:
        header = _HEADER.match(line)
        if header or line[:1] not in ("", " ", "\t", "#"):
            if name is not None:
                yield name, "\n".join(body)
            name, body = (header.group(1) if header else None), []
        elif name is not None:
            body.append(line)


def _rule(name: str, body: str) -> Rule:
    bench, group, code = _BENCHMARK.search(body), _GROUP.search(body), _CODE.search(body)
    return Rule(
        name,
        benchmark=next((g for g in bench.groups() if g), None) if bench else None,
        group=group.group(1) if group else None,
        local=bool(_LOCAL.search(body)),
        runs=bool(_RUNS.search(body)),
        code=code.group(1) if code else None,
    )


def dry_run_jobs(profile: str, params: str) -> tuple[dict[str, int] | None, str]:
    """Jobs per rule of ``snakemake -n`` here, or (None, why not)."""
    command = snakemake_command(profile, params, "--dry-run", "--quiet", "rules")
    print("+ " + " ".join(command), file=sys.stderr)
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        return None, f"snakemake did not start ({exc})"
    text = result.stdout + result.stderr
    if result.returncode != 0:
        last = [line for line in result.stderr.splitlines() if line.strip()][-1:]
        return None, f"snakemake -n failed ({last[0].strip() if last else result.returncode})"
    return parse_job_stats(text), ""


def parse_job_stats(text: str) -> dict[str, int]:
    """Rule -> jobs from Snakemake's "Job stats" table; {} when it has nothing to do."""
    if "Job stats:" not in text:
        return {}
    jobs: dict[str, int] = {}
    for line in text.split("Job stats:", 1)[1].splitlines():
        match = _JOB_COUNT.match(line.strip())
        if match and match.group(1) == "total":
            break
        if match:
            jobs[match.group(1)] = int(match.group(2))
    return jobs


@dataclass(frozen=True)
class LeafJobs:
    """The leaves a build redoes, as ``labmake plan`` found them against the last build."""

    redo: int  # new or changed
    knowledge_redo: int
    removed: int
    removed_knowledge: int
    fresh: bool  # the last build has no leaf: everything runs


def derive_jobs(cfg: BuildConfig, leaves: LeafJobs, workflow: Workflow) -> dict[str, int]:
    """Jobs per rule from params.yaml and the leaves to redo, as the rules wire them: per
    leaf its seeds, generate and filter (a knowledge leaf its multiple choice too), then
    the shared tail once (one train per phase, a quantize per type, an evaluate per model)."""
    from labmake.evaluation.models import model_names

    phases = [p.name for p in cfg.train.phases]
    quants = list(cfg.export.quantizations)
    n = leaves.redo
    counts = {"seeds": n, "generate": n, "filter": n}
    counts["generate_multiple_choice"] = leaves.knowledge_redo
    if n or leaves.removed or leaves.fresh:
        mc = leaves.fresh or leaves.knowledge_redo or leaves.removed_knowledge
        counts |= {"multiple_choice": int(bool(mc)), "mix": 1, "train": len(phases)}
        counts |= {"merge": 1, "gguf_f16": 1, "quantize": len(set(quants) - {"F16"})}
        counts |= {"evaluate": len(model_names(phases, quants)), "report": 1}
        # lm_eval scores the base and the tuned model (rules/retention.smk).
        counts |= {"lm_eval": 2 if cfg.evaluate.lm_eval.tasks else 0}
        counts |= {"model_card": 1, "manifest": 1, "all": 1}
    if leaves.fresh:
        counts |= {"base_model": 1, "retention_reference": 1}
        # A Hugging Face student is exported once for the base's answers (rules/train.smk).
        counts |= {"student_gguf": int(cfg.student.hf is not None)}
    known = workflow.rules
    jobs = {rule: c for rule, c in counts.items() if c and (not known or rule in known)}
    if leaves.fresh:  # one code stamp per script a rule that runs reads
        stamps = {known[r].code for r in jobs if r in known and known[r].code}
        jobs["code_stamp"] = len(stamps)
    return {rule: c for rule, c in jobs.items() if c}


def read_profile(profile: Path) -> dict[str, Any]:
    """A Snakemake profile's settings (config.v8+.yaml before config.yaml, as Snakemake 8+
    reads them); {} when the folder has neither."""
    for name in ("config.v8+.yaml", "config.yaml"):
        path = Path(profile) / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ProfileError(f"{path}: cannot read: {exc}") from None
            return data if isinstance(data, dict) else {}
    return {}


def _pairs(value: Any) -> dict[str, Any]:
    """A profile setting of NAME=VALUE entries, in any of Snakemake's spellings: a mapping, a
    list of "NAME=VALUE" strings, or one string of them."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    items = value.split() if isinstance(value, str) else list(value or [])
    return dict(str(item).split("=", 1) for item in items if "=" in str(item))


def _partition(profile: dict[str, Any], rule: str) -> str | None:
    """The SLURM partition a rule's jobs ask for (set-resources, else default-resources)."""
    own = profile.get("set-resources")
    own = own.get(rule) if isinstance(own, dict) else None
    if isinstance(own, dict) and "slurm_partition" in own:
        return str(own["slurm_partition"])
    default = _pairs(profile.get("default-resources")).get("slurm_partition")
    return None if default is None else str(default)


def allocations(
    jobs: dict[str, int], workflow: Workflow, profile: dict[str, Any]
) -> dict[str, Any] | None:
    """The cluster allocations these jobs take: one per job of a rule that is neither local nor
    in a group, and per group ceil(jobs / group-components); None for a profile that runs the
    jobs on this machine. Jobs of a group that the DAG does not connect (each leaf's) are
    separate components: N of them share a submission."""
    executor = profile.get("executor")
    if executor is None or executor in LOCAL_EXECUTORS:
        return None
    try:
        per = {g: max(1, int(n)) for g, n in _pairs(profile.get("group-components")).items()}
    except ValueError as exc:
        raise ProfileError(f"group-components: {exc}") from None
    single, grouped = _split_by_group(jobs, workflow, profile)
    by_group = {g: _group_row(members, per.get(g, 1)) for g, members in grouped.items()}
    total = sum(single.values()) + sum(row["allocations"] for row in by_group.values())
    out = {"executor": executor, "allocations": total, "rules": single, "groups": by_group}
    default = _partition(profile, "")
    parts = {r: p for r in single if (p := _partition(profile, r)) and p != default}
    return out | ({"partitions": parts} if parts else {})


def _split_by_group(
    jobs: dict[str, int], workflow: Workflow, profile: dict[str, Any]
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The submitted jobs per rule: of rules in no group, and of each group's rules (a rule's
    own ``group:``, or the profile's ``groups``); local rules and rule all are not submitted."""
    rules = workflow.rules
    groups = {n: r.group for n, r in rules.items() if r.group} | _pairs(profile.get("groups"))
    single: dict[str, int] = {}
    grouped: dict[str, dict[str, int]] = {}
    for rule, n in jobs.items():
        spec = rules.get(rule, Rule(rule))
        if spec.local or not spec.runs:
            continue
        if rule in groups:
            grouped.setdefault(str(groups[rule]), {})[rule] = n
        else:
            single[rule] = n
    return single, grouped


def _group_row(members: dict[str, int], per: int) -> dict[str, Any]:
    n = sum(members.values())
    return {"jobs": n, "rules": members, "per_allocation": per, "allocations": math.ceil(n / per)}


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The cost as text: jobs per rule, the rates, time per stage and allocations; no line
    when no job runs."""
    jobs = cost["jobs"]
    if not jobs:
        return []
    lines: list[str] = []
    listed = ", ".join(f"{rule} {n}" for rule, n in jobs.items())
    lines.append(f"jobs ({cost['jobs_from']}): {sum(jobs.values())}: {listed}")
    lines += [f"  note: {note}" for note in cost["notes"]]
    if cost["rates"] is not None:
        lines.append(f"rates ({cost['rates']['source']}): {_rates_text(cost['rates'])}")
        lines.append("time (job-seconds: summed over jobs; jobs side by side end sooner):")
        stages = [*cost["stages"].items(), ("total", cost["total"])]
        lines += [_stage_line(stage, row) for stage, row in stages]
    return [*lines, _allocations_text(cost)]


_UNITS = {
    "teacher_tokens_per_s": "tokens/s",
    "teacher_seconds_per_request": "s/request",
    "train_tokens_per_s": "tokens/s",
    "train_seconds_per_step": "s/step",
}


def _rates_text(rates: dict[str, Any]) -> str:
    """The rates in use (the teacher's and training's chosen one each) and what they rest on."""
    values, basis, parts = rates["values"], rates["basis"], []
    for what, key in rates["use"].items():
        if key is not None:
            given = "given" if key in rates["given"] else basis.get(what, "")
            parts.append(
                f"{what} {values[key]:.2f} {_UNITS[key]}" + (f" ({given})" if given else "")
            )
    parts.append(f"other rules: seconds per job ({basis.get('jobs', 'given')})")
    return "; ".join(parts)


def _stage_line(stage: str, row: dict[str, Any]) -> str:
    """One stage's jobs and time, how it was priced, and the jobs no rate covers."""
    line = f"  {stage:<9}{row['jobs']:>5} jobs"
    if "seconds" not in row:
        return line
    time = _duration(row["seconds"])
    if round(row["seconds_low"]) < round(row["seconds"]):
        time = f"{_duration(row['seconds_low'])} to {time}"
    how = list(row.get("how", []))
    unpriced = row["unpriced_jobs"]
    if isinstance(unpriced, dict) and unpriced:
        listed = ", ".join(f"{rule} {n}" for rule, n in unpriced.items())
        how.append(f"not counted, no rate: {listed}")
    elif isinstance(unpriced, int) and unpriced:
        how.append(f"not counted, no rate: {unpriced} jobs")
    return f"{line}  {time}" + (f"  ({'; '.join(how)})" if how else "")


def _duration(seconds: float) -> str:
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _allocations_text(cost: dict[str, Any]) -> str:
    """Where the jobs run: this machine, or the allocations a cluster profile would make."""
    alloc, profile = cost["allocations"], cost["profile"]
    if alloc is None:
        return f"local ({profile}): {cost['total']['jobs']} jobs on this machine"
    parts = [
        f"group {g} {row['allocations']} "
        f"({row['jobs']} jobs, {row['per_allocation']} per allocation)"
        for g, row in alloc["groups"].items()
    ]
    partitions = alloc.get("partitions", {})
    for rule, n in alloc["rules"].items():
        parts.append(f"{rule} {n}" + (f" [{partitions[rule]}]" if rule in partitions else ""))
    head = f"{alloc['executor']} allocations ({profile}): {alloc['allocations']}"
    return f"{head}: {', '.join(parts)}"
