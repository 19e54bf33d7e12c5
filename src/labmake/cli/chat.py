"""``labmake chat MODEL.gguf``: a multi-turn, streaming terminal chat with a GGUF model.

It uses the chat template stored in the GGUF, as any llama.cpp front end would, so what a person
sees here is what the model does when served. Reads lines from stdin (a terminal or a pipe);
``/reset`` starts over, ``/exit`` or end of input quits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labmake.cli.exit_codes import EXIT_USAGE


def gpu_layers(text: str) -> int:
    """``--n-gpu-layers``: as llama.cpp takes it, 0 (CPU only) or more, or -1 for all layers."""
    value = int(text)
    if value < -1:
        raise argparse.ArgumentTypeError(f"{value}: use 0 (CPU only), N layers, or -1 (all)")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("chat", help="talk to a GGUF model in the terminal")
    p.add_argument("model", help="a .gguf file, e.g. build/model/model.Q4_K_M.gguf")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument(
        "--n-gpu-layers",
        type=gpu_layers,
        default=0,
        help="layers llama.cpp puts on the GPU (0: CPU only, -1: all)",
    )
    p.add_argument("--system", default=None, help="a system message to start the conversation with")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return chat(
        Path(args.model),
        n_ctx=args.n_ctx,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        system=args.system,
        n_gpu_layers=args.n_gpu_layers,
    )


def chat(
    model: Path,
    *,
    n_ctx: int,
    max_tokens: int,
    temperature: float,
    system: str | None,
    n_gpu_layers: int = 0,
) -> int:
    if not model.is_file():
        print(
            f"labmake chat: error: {model}: no such GGUF file (build one with `labmake build`)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from labmake.core.llama import LlamaLoadError, open_llama

    try:
        llm = open_llama(model, n_ctx=n_ctx, n_gpu_layers=n_gpu_layers)
    except LlamaLoadError as exc:
        print(f"labmake chat: error: {exc}", file=sys.stderr)
        return 1
    start = [{"role": "system", "content": system}] if system else []
    history = list(start)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"labmake chat: {model.name} (type /reset to start over, /exit to quit)")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            history = list(start)
            continue
        history.append({"role": "user", "content": text})
        print("model> ", end="", flush=True)
        reply = []
        for chunk in llm.create_chat_completion(
            messages=history, max_tokens=max_tokens, temperature=temperature, stream=True
        ):
            piece = chunk["choices"][0]["delta"].get("content") or ""
            reply.append(piece)
            print(piece, end="", flush=True)
        print()
        history.append({"role": "assistant", "content": "".join(reply).strip()})
    llm.close()
    return 0
