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
    diff,
    plan,
    release,
    reproduce,
    serve,
    toolchain,
    validate,
)

# In the order `labmake --help` lists them: the everyday loop first.
COMMANDS = (validate, build, diff, plan, release, reproduce, toolchain, chat, serve)


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
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("\nlabmake: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
