"""The child process that converts one document: ``python -m labmake.taxonomy.formats.worker
FORMAT CONVERTER [MODELS]`` reads the file's bytes on stdin and prints ``{"text": ...}`` or ``{"error": ...,
"hint": ...}`` as JSON. It runs under a memory and CPU-time limit so that a hostile file can
cost no more than that (:mod:`labmake.taxonomy.formats`)."""

from __future__ import annotations

import json
import os
import sys

MEMORY_LIMIT_BYTES = 4 << 30
CPU_LIMIT_S = 300


def _limit() -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: the parent's timeout still applies
        return
    for which, value in (
        (resource.RLIMIT_AS, MEMORY_LIMIT_BYTES),
        (resource.RLIMIT_CPU, CPU_LIMIT_S),
    ):
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, hard))


def convert(fmt: str, data: bytes, converter: str = "builtin", models: str | None = None) -> str:
    if converter == "docling":
        from labmake.taxonomy.formats.docling import docling_to_markdown

        return docling_to_markdown(fmt, data, models)
    if fmt == "pdf":
        from labmake.taxonomy.formats.pdf import pdf_to_markdown

        return pdf_to_markdown(data)
    from labmake.taxonomy.formats.markup import docx_to_markdown, html_to_markdown

    if fmt == "docx":
        return docx_to_markdown(data)
    if fmt == "html":
        return html_to_markdown(data)
    raise ValueError(f"no converter for {fmt!r}")


def main() -> int:
    from labmake.taxonomy.formats.errors import UnreadableDocument

    _limit()
    data = sys.stdin.buffer.read()
    # The reply is the only thing on stdout: whatever a library prints goes to stderr.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        models = sys.argv[3] if len(sys.argv) > 3 else None
        reply = {"text": convert(sys.argv[1], data, sys.argv[2], models)}
    except UnreadableDocument as exc:
        reply = {"error": exc.message, "hint": exc.hint}
    sys.stdout.flush()
    with os.fdopen(reply_fd, "w", encoding="ascii") as out:
        out.write(json.dumps(reply, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
