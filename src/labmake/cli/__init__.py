"""The ``labmake`` command: one module per subcommand, each registering its own parser.

Heavy libraries (torch, transformers, llama_cpp, snakemake) are imported inside the command
that needs them, so ``labmake validate`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import os
import sys

from labmake import __version__
from labmake.cli import (
    build,
    chat,
    data,
    diff,
    plan,
    release,
    reproduce,
    serve,
    toolchain,
    try_leaf,
    validate,
)

# In the order `labmake --help` lists them: the everyday loop first.
COMMANDS = (validate, try_leaf, data, build, diff, plan, release, reproduce, toolchain, chat, serve)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="labmake",
        description="Compile a taxonomy of seed examples into a fine-tuned, quantized GGUF model.",
    )
    top.add_argument("--version", action="version", version=f"labmake {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # `labmake build` hands Snakemake's own arguments through as typed (argparse cannot).
    argv, snakemake_args = build.split_command_line(sys.argv[1:] if argv is None else list(argv))
    args = parser().parse_args(argv)
    if snakemake_args is not None:
        args.snakemake_args = snakemake_args
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\nlabmake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
