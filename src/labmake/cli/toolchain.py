"""``labmake toolchain check|show``: the installed packages against requirements.lock.

``check`` fails (exit 1) on any difference and names each one with the fix; ``show`` prints
the toolchain keys a build records in every GGUF it writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labmake.cli.exit_codes import EXIT_USAGE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "toolchain", help="check the installed packages against requirements.lock, or show them"
    )
    p.add_argument("action", choices=("check", "show"))
    p.add_argument("--root", default=".", help="the project folder holding the lock")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # Here, not at the top: packaging and importlib.metadata would slow every other command.
    from labmake.core import toolchain

    root = Path(args.root)
    lock = toolchain.Lock.find(root)
    if args.action == "show":
        keys = toolchain.provenance(root)
        width = max(len(k) for k in keys)
        for key, value in keys.items():
            print(f"{key:<{width}}  {value}")
        return 0
    if lock is None:
        print(f"labmake toolchain: error: no {toolchain.LOCK} in {root}", file=sys.stderr)
        return EXIT_USAGE
    try:
        differences = lock.differences()
    except toolchain.ToolchainError as exc:
        print(f"labmake toolchain: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if differences:
        message = toolchain.mismatch_message(differences, str(lock.path))
        print(f"labmake toolchain: error: {message}", file=sys.stderr)
        return 1
    print(f"labmake toolchain: the installed packages are exactly {lock.path}")
    return 0
