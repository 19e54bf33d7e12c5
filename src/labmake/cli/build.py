"""``labmake build``: validate the taxonomy, check the toolchain, then run Snakemake.

A broken qna.yaml is reported file by file before any job starts, and a build from source runs
under the project's locked toolchain (or says loudly that it does not), so that its bytes match
any other build of the same commit.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.validate import run_validate
from labmake.core import paths


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "build", help="run the build with snakemake (extra arguments go to snakemake)"
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
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="passed to snakemake, e.g. -n")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from labmake.core.config import ConfigError, load

    try:
        cfg = load(args.params)
    except ConfigError as exc:
        print(f"labmake build: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = _check_build_toolchain(args.allow_toolchain_mismatch)
    if status != 0:
        return status
    # A broken qna.yaml is reported here, file by file, before any job starts.
    status = run_validate(
        [Path(cfg.taxonomy.root)], ilab_strict=False, fmt="text", params_path=Path(args.params)
    )
    if status != 0:
        print("labmake build: fix the taxonomy errors above, then build again.", file=sys.stderr)
        return status
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    command = [
        snakemake,
        "--profile",
        args.profile,
        "--configfile",
        args.params,
        *args.snakemake_args,
    ]
    print("+ " + " ".join(command), file=sys.stderr)
    result = subprocess.run(command, check=False)
    if result.returncode == 0 and "-n" not in args.snakemake_args:
        model = paths.gguf(cfg.export.quantizations[0])
        print(
            f"\nlabmake: built {model}\n  evaluation: {paths.EVAL_REPORT}\n"
            f"  build report: {paths.REPORT_HTML}\n"
            f"  chat with it: labmake chat {model}"
        )
    return result.returncode


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
