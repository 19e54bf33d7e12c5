"""``labmake build``: validate the taxonomy, check the toolchain, then run Snakemake.

A broken qna.yaml is reported file by file before any job starts, and a build from source runs
under the project's locked toolchain (or says loudly that it does not), so that its bytes match
any other build of the same commit.

Snakemake's own arguments pass through as typed (``labmake build -n``, ``labmake build -j 2
--forcerun mix``, targets): labmake keeps only its own options (``--profile``, ``--params``,
``--allow-toolchain-mismatch``, ``-h``) wherever they stand, and everything after ``--`` goes to
Snakemake untouched. argparse cannot do this itself: it refuses options it does not know, and
its REMAINDER does not start at an option.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import labmake
from labmake.cli import build_state
from labmake.cli.build_checks import student_checked, validate_changed
from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.workflow_command import snakemake_command
from labmake.core import paths
from labmake.training.student_hf import student_files

if TYPE_CHECKING:  # the config module is imported when the command runs
    from labmake.core.config import BuildConfig


# labmake build's own options: the ones with a value, and the flags.
_OWN_OPTIONS = ("--profile", "--params")
_OWN_FLAGS = ("--allow-toolchain-mismatch", "-h", "--help")
# Snakemake arguments that make it build nothing (so no "built ..." message after them).
_NO_BUILD = frozenset(
    "-n --dry-run --dryrun --summary -S --detailed-summary -D --list -l --list-target-rules "
    "--lt --dag --rulegraph --filegraph --d3dag --lint --touch -t --unlock --cleanup-metadata "
    "--delete-all-output --delete-temp-output --list-changes --lc --help -h --version -v".split()
)
_SHORT_FLAGS_WITH_N = re.compile(r"-[A-Za-z]*n[A-Za-z]*")  # -n bundled: -np, -pn


def split_command_line(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """(what labmake's parser reads, Snakemake's arguments in the order typed, or None when
    the command is not ``build``)."""
    if argv[:1] != ["build"]:
        return argv, None
    own: list[str] = ["build"]
    passed: list[str] = []
    rest = argv[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--":
            passed.extend(rest[i + 1 :])
            break
        if arg in _OWN_OPTIONS and i + 1 < len(rest):
            own += [arg, rest[i + 1]]
            i += 1
        elif arg.split("=", 1)[0] in _OWN_OPTIONS or arg in _OWN_FLAGS:
            own.append(arg)
        else:
            passed.append(arg)
        i += 1
    return own, passed


def builds_nothing(snakemake_args: list[str]) -> bool:
    """Whether Snakemake, given these arguments, only reports (a dry run, a summary, ...)."""
    return any(
        a in _NO_BUILD or (not a.startswith("--") and _SHORT_FLAGS_WITH_N.fullmatch(a))
        for a in snakemake_args
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build",
        help="run the build with snakemake (other arguments go to snakemake: -n, -j 2, targets)",
        usage="labmake build [--profile P] [--params FILE] [--allow-toolchain-mismatch] "
        "[snakemake arguments ...]",
        epilog="Any other argument goes to snakemake as typed: labmake build -n; labmake build "
        "-j 2 --forcerun mix; labmake build build/data/mix.json. After --, everything does.",
    )
    p.add_argument(
        "--profile",
        default="profiles/local",
        help="snakemake profile (profiles/local or profiles/slurm)",
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument(
        "--allow-toolchain-mismatch",
        action="store_true",
        help="build even when the installed packages differ from requirements.lock",
    )
    p.set_defaults(func=_run, snakemake_args=[])


def _run(args: argparse.Namespace) -> int:
    from labmake.core.config import ConfigError, load

    try:
        cfg = load(args.params)
    except ConfigError as exc:
        print(f"labmake build: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = _backend_problem(cfg)
    if problem is not None:
        print(
            f"labmake build: error: {args.params}: {problem.removeprefix('params.yaml: ')}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    status = _check_build_toolchain(args.allow_toolchain_mismatch)
    if status != 0:
        return status
    inputs = build_state.Inputs(
        project=Path.cwd(),
        params=Path(args.params),
        taxonomy=Path(cfg.taxonomy.root),
        profile=Path(args.profile),
        code=Path(labmake.__file__).parent,
        student=tuple(student_files(cfg.student)),
    )
    plain = not args.snakemake_args  # the whole build, as configured: what a no-op can skip
    if plain and build_state.unchanged_since_last_build(inputs):
        print(
            "labmake build: nothing changed since the last build (taxonomy, params.yaml, code, "
            "lock and outputs as it left them); Snakemake not started. Any Snakemake option "
            "(e.g. `labmake build -n`) asks Snakemake itself.",
            file=sys.stderr,
        )
        return 0
    status = student_checked(inputs.params)  # a student folder labmake cannot tune or export
    if status != 0:
        return status
    # A broken qna.yaml is reported here, file by file, before any job starts.
    status = validate_changed(inputs.taxonomy, inputs.params, inputs.project)
    if status != 0:
        print("labmake build: fix the taxonomy errors above, then build again.", file=sys.stderr)
        return status
    command = snakemake_command(args.profile, args.params, *args.snakemake_args)
    print("+ " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, check=False)
    _after_snakemake(result.returncode, args.snakemake_args, inputs, cfg)
    return result.returncode


def _after_snakemake(
    returncode: int, snakemake_args: list[str], inputs: build_state.Inputs, cfg: BuildConfig
) -> None:
    """Record a finished plain build (the next no-op skips Snakemake), forget it after anything
    that may have changed outputs, and say where the model is."""
    if returncode == 0 and not snakemake_args:
        build_state.record_build(inputs)
    elif not builds_nothing(snakemake_args):
        build_state.forget_build(inputs.project)
    model = paths.gguf(cfg.export.quantizations[0])
    if returncode == 0 and not builds_nothing(snakemake_args) and Path(model).is_file():
        print(
            f"\nlabmake: built {model}\n  evaluation: {paths.EVAL_REPORT}\n"
            f"  build report: {paths.REPORT_HTML}\n"
            f"  chat with it: labmake chat {model}"
        )


def _backend_problem(cfg: BuildConfig) -> str | None:
    """The teacher and the judge must name backends that exist (plugins register theirs, so
    the schema cannot list them): said now, not hours into the build."""
    from labmake.teacher.registry import backend_problem

    sections = [("teacher", cfg.teacher), ("evaluate.judge", cfg.evaluate.judge)]
    for key, section in sections:
        if section is not None:
            problem = backend_problem(section, key)
            if problem is not None:
                return problem
    return None


def _check_build_toolchain(allow_mismatch: bool) -> int:
    """A build from source runs under the project's locked toolchain, or says it does not."""
    from labmake.core import toolchain

    lock = toolchain.Lock.find(Path.cwd())
    if lock is None:
        return 0
    try:
        differences = lock.differences()
    except toolchain.ToolchainError as exc:
        print(f"labmake build: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not differences:
        return 0
    message = toolchain.mismatch_message(differences, toolchain.LOCK)
    if not allow_mismatch:
        print(
            f"labmake build: error: {message}\nor pass --allow-toolchain-mismatch to build "
            "anyway (the bytes may then differ from a build under the lock)",
            file=sys.stderr,
        )
        return 1
    print(
        f"labmake build: warning: {message}\nbuilding anyway (--allow-toolchain-mismatch): "
        "the bytes may differ from a build under the lock",
        file=sys.stderr,
    )
    return 0
