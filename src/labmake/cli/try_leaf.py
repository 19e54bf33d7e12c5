"""``labmake try [LEAF ...]``: does the model learn the leaf I wrote? An answer in minutes.

For the leaves named (by default those ``labmake diff`` reports as added or changed): validate
them strictly, then run the build's own rules in a try folder of their own
(:mod:`labmake.cli.trial_project`): generate with a small budget, filter, mix, a short LoRA on
the last full build's tuned model (else the base), and score the model it started from and
the tried one on the leaf's held-out items. Then print, per leaf, both models' answers to the
held-out seed questions beside the reference, the reference-NLL difference with its interval,
and the funnel; and where the time went. Snakemake decides what runs, so a second try after an
edit re-runs only what the edit touched, and one with no edit prints the last result.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.leaves import LeafError, changed_leaves, named_leaves
from labmake.cli.trial_project import TryError, TryProject, prepare, try_folder
from labmake.core import artifacts, paths

LOG = "try.log"  # in the try folder: Snakemake's whole output of the last try
RECORD = "last-try.json"  # in the try folder: what the last try ran and how long it took


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "try",
        help="try leaves on a small build of their own: data, a short LoRA, answers before/after",
    )
    p.add_argument("leaves", nargs="*", help="leaves (default: those added or changed)")
    p.add_argument("--base", default=None, help="git ref the default leaves are compared with")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dir", default=None, help="the try folder (default: params' try.folder)")
    p.add_argument(
        "--from-base",
        action="store_true",
        help="tune the base model even when a full build's tuned model exists",
    )
    p.add_argument("--profile", default=None, help="snakemake profile (default profiles/local)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_try(
        Path(args.params),
        args.leaves,
        base=args.base,
        folder=args.dir,
        from_base=args.from_base,
        profile=args.profile,
    )


def _fail(message: str, code: int = 1) -> int:
    print(f"labmake try: {message}", file=sys.stderr)
    return code


def _pick_leaves(args: list[str], root: Path, base: str | None, home: Path) -> list[str]:
    if args:
        return named_leaves(args, root)
    label, changes = changed_leaves(root, base, home / paths.BUILD)
    if not changes:
        raise LeafError(
            f"no leaf added or changed against {label}; name the leaves to try "
            "(labmake try compositional_skills/...)"
        )
    print(f"labmake try: {len(changes)} leaf(s) added or changed against {label}")
    return [c.leaf for c in changes]


def _validate(root: Path, leaves: list[str], params: Path, out: TextIO) -> list[str]:
    """Strict validation (labmake's limits are errors), leaf by leaf: the invalid ones. A leaf's
    report is shown when it has anything to say."""
    from labmake.cli.validate import run_validate

    invalid = []
    for leaf in leaves:
        buffer = io.StringIO()
        status = run_validate(
            [root / leaf / "qna.yaml"],
            ilab_strict=False,
            fmt="text",
            params_path=params,
            strict_limits=True,
            out=buffer,
        )
        if status != 0 or len(buffer.getvalue().strip().splitlines()) > 1:  # findings
            out.write(buffer.getvalue())
        if status != 0:
            invalid.append(leaf)
    return invalid


def run_try(
    params_path: Path,
    leaf_args: list[str],
    *,
    base: str | None = None,
    folder: str | None = None,
    from_base: bool = False,
    profile: str | None = None,
    out: TextIO | None = None,
) -> int:
    """``labmake try``; 0 done, 1 the try failed (the message says why), 2 used wrongly."""
    from labmake.core.config import ConfigError, load

    out = out or sys.stdout
    started = time.monotonic()
    try:
        cfg = load(params_path)
    except ConfigError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    home = params_path.resolve().parent
    root = home / cfg.taxonomy.root
    try:
        leaves = _pick_leaves(leaf_args, root, base, home)
    except LeafError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE if leaf_args else 1)
    invalid = _validate(root, leaves, params_path, out)
    if invalid:
        return _fail(
            f"{', '.join(invalid)}: not valid (see above); nothing was run. Fix the file "
            "and try again (labmake validate --strict-limits checks it alone)."
        )
    validated = time.monotonic()
    if not (home / "Snakefile").is_file():
        return _fail(
            f"error: no Snakefile beside {params_path}: a try runs the project's own rules; "
            "run it from the project's root (where Snakefile and params.yaml are)",
            EXIT_USAGE,
        )
    try:
        project = _prepare(home, folder or cfg.try_.folder, cfg, params_path, leaves, from_base)
    except TryError as exc:
        return _fail(f"error: {exc}", EXIT_USAGE)
    prepared = time.monotonic()
    before = [("validate", validated - started), (f"prepare {project.root}", prepared - validated)]
    return _build_and_show(project, profile, before, started, out)


def _prepare(
    home: Path, folder: str, cfg: Any, params_path: Path, leaves: list[str], from_base: bool
) -> TryProject:
    import yaml

    raw = yaml.safe_load(params_path.read_text(encoding="utf-8"))
    tuned = home / paths.gguf("F16")
    student = tuned.resolve() if tuned.is_file() and not from_base else None
    return prepare(try_folder(home, folder), home, raw, cfg, leaves, student)


def _steps(project: TryProject, profile: str | None) -> list[tuple[str, list[str]]]:
    from labmake.cli.trial_run import snakemake_binary

    command = [
        snakemake_binary(),
        "--snakefile",
        str(project.home / "Snakefile"),
        "--profile",
        str(project.home / (profile or "profiles/local")),
    ]
    return [
        ("data: seeds, generate, filter, mix", [*command, *project.data_targets()]),
        ("model: a short LoRA, then both models scored", [*command, *project.model_targets()]),
    ]


def _environment(project: TryProject) -> dict[str, str]:
    """The build's teacher cache, named for the try's jobs (absolute: they run elsewhere)."""
    current = os.environ.get(paths.TEACHER_CACHE_ENV)
    cache = Path(current).resolve() if current else project.home / paths.TEACHER_CACHE
    return {paths.TEACHER_CACHE_ENV: str(cache)}


def _build_and_show(
    project: TryProject,
    profile: str | None,
    before: list[tuple[str, float]],
    started: float,
    out: TextIO,
) -> int:
    from labmake.cli.trial_display import Display, time_summary
    from labmake.cli.trial_run import Estimates, run_step

    log = project.root / LOG
    log.write_text("", encoding="utf-8")
    display = Display(Estimates(project.root, project.home))
    print(
        f"labmake try: {len(project.leaves)} leaf(s) in {project.root}, tuning {project.start}",
        file=sys.stderr,
    )
    runs = []
    for title, command in _steps(project, profile):
        display.begin(title)
        run = run_step(title, command, project.root, _environment(project), log, display)
        runs.append(run)
        if run.returncode != 0:
            return _failed(project, run, log)
    shown = time.monotonic()
    from labmake.cli.trial_view import outcome, print_outcome

    if all(r.stream.nothing_to_do for r in runs):
        print("labmake try: nothing changed since the last try; its result:", file=out)
    results = outcome(project)
    print_outcome(results, project, out)
    after = [("results", time.monotonic() - shown)]
    total = time.monotonic() - started
    time_summary(runs, before, after, total, out)
    _record(project, runs, total, results)
    return 0


def _failed(project: TryProject, run: Any, log: Path) -> int:
    failed = [j.label for j in run.stream.jobs.values() if j.finished is None]
    what = f"the {', '.join(failed)} job failed" if failed else "snakemake failed"
    lines = run.stream.errors or [line for line in run.stream.tail if line.strip()][-12:]
    print(f"\nlabmake try: {what}:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    hints = [f"snakemake's whole output: {log}"]
    hints += [f"the job's log: {project.root / paths.BUILD / 'logs'}/"]
    hints += [f"the data so far: labmake data show {leaf} --try" for leaf in project.leaves]
    print("\n".join(f"  {h}" for h in hints), file=sys.stderr)
    return 1


def _record(project: TryProject, runs: list[Any], total: float, results: list[Any]) -> None:
    jobs = [
        {"rule": j.rule, "name": j.name, "seconds": round(j.seconds(j.finished), 2)}
        for run in runs
        for j in run.stream.jobs.values()
        if j.finished is not None
    ]
    record = {
        "leaves": list(project.leaves),
        "start": project.start,
        "jobs": jobs,
        "nothing_to_do": all(r.stream.nothing_to_do for r in runs),
        "seconds": round(total, 2),
        "leaves_outcome": {
            r.leaf: {
                "reference_nll": r.nll,
                "multiple_choice": r.choice,
                "funnel": r.funnel,
                "answers": r.rows,
            }
            for r in results
        },
    }
    artifacts.write_json(project.root / RECORD, record)
