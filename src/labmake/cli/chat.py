"""``labmake chat MODEL.gguf``: a multi-turn, streaming terminal chat with a GGUF model.

It uses the chat template stored in the GGUF, as any llama.cpp front end would, so what a person
sees here is what the model does when served. Reads lines from stdin (a terminal or a pipe);
``/reset`` starts over, ``/exit`` or end of input quits.
"""

from __future__ import annotations

import sys
from pathlib import Path


def chat(
    model: Path, *, n_ctx: int, max_tokens: int, temperature: float, system: str | None
) -> int:
    if not model.is_file():
        print(
            f"labmake chat: error: {model}: no such GGUF file (build one with `labmake build`)",
            file=sys.stderr,
        )
        return 2
    from labmake.core.llama import LlamaLoadError, open_llama

    try:
        llm = open_llama(model, n_ctx=n_ctx)
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
