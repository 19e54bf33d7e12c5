"""``labmake plan``: what a build would redo per leaf, and the teacher work it would cost.

The leaves to redo are those new or changed since the last build (:mod:`labmake.cli.changes`);
each is priced in teacher requests and tokens by a dry run of its pipeline, without loading
any model. A leaf that cannot be priced (a broken file, a refused document source, a pipeline
that does not check) is shown with the reason, and the command exits 1: a plan with a hole in
it is not a plan.

Then the whole build: its jobs per rule (:mod:`labmake.cli.plan_cost`, from Snakemake's dry
run), their time per stage from rates measured on a finished build or given for other
hardware (:mod:`labmake.cli.plan_rates`), and the allocations a cluster profile would make.
No rate, no time: the counts are printed alone rather than with a guess.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from labmake.cli import plan_cost, plan_rates
from labmake.cli.changes import (
    ADDED,
    CHANGED,
    REMOVED,
    UNCHANGED,
    LeafChange,
    change_line,
    diff_against_build,
    load_project,
)
from labmake.cli.exit_codes import EXIT_USAGE
from labmake.core import paths
from labmake.taxonomy.findings import TaxonomyError, printable
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.limits import estimate_tokens
from labmake.taxonomy.scan import knowledge_leaves

# plan speaks of what a build does with a leaf, so a leaf it never built is "new".
PLAN_WORDS = {ADDED: "new", CHANGED: "changed", REMOVED: "removed", UNCHANGED: "unchanged"}
COST_KEYS = ("requests", "prompt_tokens", "completion_tokens", "tokens")
FIRST_ROUND_KEYS = ("first_round_requests", "first_round_tokens")
DEFAULT_PROFILE = "profiles/local"  # as labmake build's

if TYPE_CHECKING:  # the config module is imported when a command runs, not when it is listed
    from labmake.core.config import BuildConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan", help="what a build would redo per leaf, with teacher requests and tokens"
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--taxonomy", default=None, help="taxonomy root (default: params.yaml's)")
    p.add_argument("--build-dir", default=paths.BUILD, help="the last build's folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument(
        "--profile",
        default=None,
        help=f"snakemake profile the build would run with (default: {DEFAULT_PROFILE}); "
        "a cluster profile's allocations are counted",
    )
    p.add_argument(
        "--rates",
        default=None,
        help="YAML of rates for your hardware (teacher_tokens_per_s, teacher_seconds_per_request, "
        "train_tokens_per_s, train_seconds_per_step, seconds_per_job: {rule: s}); "
        "over the measured ones",
    )
    p.add_argument(
        "--rates-from",
        default=None,
        help="a finished build's folder whose benchmarks give the rates (default: --build-dir)",
    )
    p.add_argument(
        "--jobs-from",
        choices=("params", "snakemake"),
        default="params",
        help="jobs per rule derived from params.yaml and the leaves to redo (instant), or from "
        "snakemake's dry run (the DAG itself, code changes included; seconds per 100 leaves; "
        "needs --build-dir to be ./build)",
    )
    p.set_defaults(func=_run)


@dataclass(frozen=True)
class CostOptions:
    """How to price the build: the profile (None: the local one, missing or not), a rates
    file, the build whose benchmarks give the rates (None: the last build), where jobs
    come from (``snakemake`` or ``params``)."""

    profile: Path | None = None
    rates: Path | None = None
    rates_from: Path | None = None
    jobs_from: str = "params"


def _run(args: argparse.Namespace) -> int:
    options = CostOptions(
        profile=Path(args.profile) if args.profile else None,
        rates=Path(args.rates) if args.rates else None,
        rates_from=Path(args.rates_from) if args.rates_from else None,
        jobs_from=args.jobs_from,
    )
    return run_plan(
        Path(args.params),
        taxonomy=Path(args.taxonomy) if args.taxonomy else None,
        build_dir=Path(args.build_dir),
        fmt=args.format,
        options=options,
    )


def estimate_leaf(
    root: Path, leaf: str, cfg: BuildConfig, base: Path = Path(".")
) -> dict[str, int]:
    """Teacher requests and estimated tokens to generate this leaf's data from scratch.

    A dry run of the leaf's pipeline (labmake.sdg) in which every sample passes every judge:
    an upper bound, since judges only ever remove samples before the next teacher call. A
    knowledge leaf's evaluation multiple choice (labmake.sdg.multiple_choice) is counted in, and
    with generate.knowledge.augment its chunk rewrites (``augment_requests``) and the first
    round's Q/A requests on them, every rewrite kept (``augmented_qa_requests``).
    Git documents are read only from taxonomy.document_sources (relative folders from ``base``,
    the folder of params.yaml, where the build runs).
    """
    from labmake.sdg.generation import request_bound
    from labmake.sdg.multiple_choice import estimate_requests
    from labmake.taxonomy.document_sources import DocumentSources
    from labmake.taxonomy.formats import ConverterChoice
    from labmake.taxonomy.seeds import leaf_record

    # Chunk counts from the quick token estimate: planning must not load a tokenizer.
    sources = DocumentSources(cfg.taxonomy.document_sources, base)
    loaded = load_leaf(root, leaf, ConverterChoice.of(cfg.seeds))
    record = leaf_record(loaded, cfg.seeds, estimate_tokens, sources)
    # A pipeline with a yield floor may run more rounds: up to `most` requests, priced at its
    # first round's tokens per request.
    bound = request_bound(record, cfg.generate, cfg.teacher, cfg.seed)
    first, most = bound.first, bound.most
    scale = most / len(first) if first else 1.0
    mc = estimate_requests(record, cfg.evaluate.multiple_choice, cfg.teacher, cfg.seed)
    first_round = sum(estimate_tokens(r.prompt) + r.max_tokens for r in first)
    mc_tokens = sum(estimate_tokens(r.prompt) + r.max_tokens for r in mc)
    prompt = round(scale * sum(estimate_tokens(r.prompt) for r in first))
    prompt += sum(estimate_tokens(r.prompt) for r in mc)
    completion = round(scale * sum(r.max_tokens for r in first)) + sum(r.max_tokens for r in mc)
    out = {
        "requests": most + len(mc),
        "first_round_requests": len(first) + len(mc),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
        "first_round_tokens": first_round + mc_tokens,
    }
    if bound.rewrites:
        out |= {"augment_requests": bound.rewrites, "augmented_qa_requests": bound.on_rewrites}
    return out


def run_plan(
    params_path: Path,
    *,
    taxonomy: Path | None = None,
    build_dir: Path = Path(paths.BUILD),
    fmt: str = "text",
    out: TextIO | None = None,
    options: CostOptions | None = None,
) -> int:
    """Print what a build would redo per leaf, with the teacher work it costs, then its jobs,
    their time and allocations; 0, 1 when a leaf could not be priced, 2 for a usage error."""
    out = out or sys.stdout
    options = options or CostOptions()
    project = load_project(params_path, taxonomy, "plan")
    if project is None:
        return EXIT_USAGE
    cfg, root = project
    try:
        given = plan_rates.read_rates_file(options.rates) if options.rates else None
        profile = _read_profile(options.profile)
        changes = diff_against_build(root, build_dir)
        rows = [(change, _row(root, change, cfg, params_path.parent)) for change in changes]
        plan = _Plan(cfg, root, params_path, build_dir, changes, rows)
        cost = _cost(plan, options, given, profile)
    except (TaxonomyError, plan_rates.RatesError, plan_cost.ProfileError) as exc:
        print(f"labmake plan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    totals = _totals(rows)
    unpriced = [row["leaf"] for _, row in rows if "error" in row]
    if fmt == "json":
        doc = {"base": f"last build ({build_dir})", "leaves": [r for _, r in rows]}
        doc |= {"totals": totals, "cost": cost}
        out.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    else:
        _print_text(rows, totals, build_dir, out)
        for line in plan_cost.cost_lines(cost):
            print(line, file=out)
    if unpriced:
        print(
            f"labmake plan: error: {len(unpriced)} leaf/leaves could not be priced "
            f"({', '.join(printable(u) for u in unpriced[:5])}); the totals leave them out. "
            "Fix what each line says (labmake validate shows the file's problems).",
            file=sys.stderr,
        )
        return 1
    return 0


def _read_profile(profile: Path | None) -> dict[str, Any]:
    """The profile's settings; a profile named on the command line must exist, the default
    one may be missing (plan run outside the project: nothing to submit)."""
    if profile is not None and not profile.is_dir():
        raise plan_cost.ProfileError(f"--profile {profile}: no such folder")
    return plan_cost.read_profile(profile or Path(DEFAULT_PROFILE))


@dataclass(frozen=True)
class _Plan:
    """What the per-leaf part of the plan found: what pricing the build starts from."""

    cfg: BuildConfig
    root: Path
    params: Path
    build_dir: Path
    changes: list[LeafChange]
    rows: list[tuple[LeafChange, dict[str, Any]]]


def _cost(
    plan: _Plan, options: CostOptions, given: dict[str, Any] | None, profile: dict[str, Any]
) -> dict[str, Any]:
    """The build's cost: jobs per rule, the rates, time per stage, allocations."""
    here = Path.cwd()
    workflow = plan_cost.read_workflow(
        here if (here / "Snakefile").is_file() else plan.params.parent
    )
    jobs, jobs_from, notes = _jobs(plan, options, workflow)
    rates_dir = options.rates_from or plan.build_dir
    benchmarks = {name: r.benchmark for name, r in workflow.rules.items() if r.benchmark}
    measured = plan_rates.measured_rates(rates_dir, benchmarks)
    rates = plan_rates.combine(measured, given, options.rates)
    if rates is None:
        notes.append(f"no rates: no benchmark in {rates_dir} and no --rates file; counts only")
    idle = frozenset(name for name, rule in workflow.rules.items() if not rule.runs)
    stages = plan_rates.price(jobs, _work(plan), rates, idle)
    return {
        "jobs": jobs,
        "jobs_from": jobs_from,
        "notes": notes,
        "rates": None if rates is None else _rates_doc(rates),
        "stages": stages,
        "total": _total(stages),
        "profile": str(options.profile or DEFAULT_PROFILE),
        "allocations": plan_cost.allocations(jobs, workflow, profile),
    }


def _jobs(
    plan: _Plan, options: CostOptions, workflow: plan_cost.Workflow
) -> tuple[dict[str, int], str, list[str]]:
    """Jobs per rule from Snakemake's dry run where it sees this build folder (it reads
    ./build), else derived from params.yaml and the leaves to redo; and notes on why."""
    notes: list[str] = []
    profile = str(options.profile or DEFAULT_PROFILE)
    if options.jobs_from == "snakemake":
        here = Path(paths.BUILD).resolve() == plan.build_dir.resolve()
        if here and Path("Snakefile").is_file():
            jobs, problem = plan_cost.dry_run_jobs(profile, str(plan.params))
            if jobs is not None:
                return jobs, f"snakemake -n --profile {profile}", notes
            notes.append(problem)
        else:
            notes.append(f"snakemake -n sees ./{paths.BUILD} here, not {plan.build_dir}")
    redo = [c.leaf for c in plan.changes if c.status in (ADDED, CHANGED)]
    removed = [c.leaf for c in plan.changes if c.status == REMOVED]
    leaves = plan_cost.LeafJobs(
        redo=len(redo),
        knowledge_redo=len(knowledge_leaves(plan.root, redo)),
        removed=len(removed),
        removed_knowledge=len(knowledge_leaves(plan.root, removed)),
        fresh=bool(plan.changes) and all(c.status == ADDED for c in plan.changes),
    )
    derived = "params.yaml and the leaves to redo; a changed knob or code is not seen"
    return plan_cost.derive_jobs(plan.cfg, leaves, workflow), derived, notes


def _work(plan: _Plan) -> plan_rates.Work:
    """The teacher work of the leaves priced, and each phase's steps and most tokens/step."""
    priced = [row for _, row in plan.rows if "requests" in row and "error" not in row]
    knowledge = knowledge_leaves(plan.root, [row["leaf"] for row in priced])
    total = {key: sum(row.get(key, 0) for row in priced) for key in (*COST_KEYS, *FIRST_ROUND_KEYS)}
    train = plan.cfg.train
    phases = tuple(
        (p.max_steps, p.batch_size * p.grad_accum * train.max_seq_len) for p in train.phases
    )
    return plan_rates.Work(
        requests=total["requests"],
        first_round_requests=total["first_round_requests"],
        tokens=total["tokens"],
        first_round_tokens=total["first_round_tokens"],
        teacher_jobs=len(priced) + len(knowledge),
        phases=phases,
    )


def _rates_doc(rates: plan_rates.Rates) -> dict[str, Any]:
    return {
        "source": rates.source,
        "values": rates.values,
        "seconds_per_job": rates.seconds_per_job,
        "basis": rates.basis,
        "given": sorted(rates.given),
        "use": {
            "teacher": rates.pick("teacher_tokens_per_s", "teacher_seconds_per_request"),
            "train": rates.pick("train_tokens_per_s", "train_seconds_per_step"),
        },
    }


def _total(stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    rows = stages.values()
    total: dict[str, Any] = {"jobs": sum(row["jobs"] for row in rows)}
    if all("seconds" in row for row in rows):
        total["seconds"] = sum(row["seconds"] for row in rows)
        total["seconds_low"] = sum(row["seconds_low"] for row in rows)
        total["unpriced_jobs"] = sum(sum(row["unpriced_jobs"].values()) for row in rows)
    return total


def _row(root: Path, change: LeafChange, cfg: BuildConfig, base: Path) -> dict[str, Any]:
    """One leaf's entry: its status and, for a leaf to generate, its cost (or why none)."""
    row: dict[str, Any] = {"leaf": change.leaf, "status": PLAN_WORDS[change.status]}
    row["reasons"] = list(change.reasons)
    if change.status in (ADDED, CHANGED):
        try:
            estimate = estimate_leaf(root, change.leaf, cfg, base)
        except (TaxonomyError, ValueError, OSError, RuntimeError) as exc:
            row["error"] = printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            estimate = dict.fromkeys(COST_KEYS, 0)
        row.update(estimate)
    return row


def _totals(rows: list[tuple[LeafChange, dict[str, Any]]]) -> dict[str, int]:
    totals = {key: sum(row.get(key, 0) for _, row in rows) for key in COST_KEYS}
    totals["leaves_to_generate"] = sum(c.status in (ADDED, CHANGED) for c, _ in rows)
    for status in (ADDED, CHANGED, UNCHANGED, REMOVED):
        totals[PLAN_WORDS[status]] = sum(c.status == status for c, _ in rows)
    return totals


def _print_text(
    rows: list[tuple[LeafChange, dict[str, Any]]],
    totals: dict[str, int],
    build_dir: Path,
    out: TextIO,
) -> None:
    print(f"base: last build ({build_dir})", file=out)
    for change, row in rows:
        extra = ""
        if "requests" in row:
            first = row.get("first_round_requests", row["requests"])
            rounds = f" (first round {first})" if first != row["requests"] else ""
            if row.get("augment_requests"):
                rounds += (
                    f" [{row['augment_requests']} chunk rewrites, then up to "
                    f"{row['augmented_qa_requests']} requests on the rewritten chunks]"
                )
            extra = f": at most {row['requests']} requests{rounds}, ~{row['tokens']} tokens"
        if "error" in row:
            extra += f" [cannot estimate: {row['error']}]"
        print(change_line(change, row["status"], extra), file=out)
    print(
        f"total: {totals['leaves_to_generate']} leaves to generate, {totals['requests']} teacher "
        f"requests, ~{totals['tokens']} tokens (~{totals['prompt_tokens']} prompt + "
        f"{totals['completion_tokens']} completion)",
        file=out,
    )
