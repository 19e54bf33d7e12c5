"""``labmake serve MODEL.gguf``: llama.cpp's OpenAI-compatible server for a built model.

The server runs as a child process of this interpreter (``python -m labmake.core.llama``), so
it loads llama.cpp through the same guarded loader as every other labmake command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from labmake.cli.chat import gpu_layers
from labmake.cli.exit_codes import EXIT_USAGE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve a GGUF model with llama.cpp's OpenAI-compatible server")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--n-gpu-layers",
        type=gpu_layers,
        default=0,
        help="layers llama.cpp puts on the GPU (0: CPU only, -1: all)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if not model.is_file():
        print(f"labmake serve: error: {model}: no such GGUF file", file=sys.stderr)
        return EXIT_USAGE
    command = [
        sys.executable,
        "-m",
        "labmake.core.llama",
        "--model",
        str(model),
        "--host",
        args.host,
        "--port",
        str(args.port),
        # The server's own spelling of the option (its flags are its settings' field names).
        "--n_gpu_layers",
        str(args.n_gpu_layers),
    ]
    print("+ " + " ".join(command), file=sys.stderr)
    return subprocess.run(command, check=False).returncode
