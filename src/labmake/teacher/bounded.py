"""What an HTTP teacher sends back, read as untrusted: bounded in time and size, then cleaned.

A server (or whatever answers at its address) can trickle a reply a byte at a time, send
hundreds of megabytes, send a small gzip body that expands to gigabytes, put terminal escapes
or NUL bytes in an answer, or echo the request's ``Authorization`` header in an error page.
:func:`read_body` reads under one deadline and one size cap (decompressing itself, never past
the cap); :func:`clean_answer` removes control characters from the text that becomes training
data; :func:`redact` makes a server's words safe to show in a message or a log.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Iterable
from typing import Any

# An answer of max_tokens tokens is a few kilobytes of JSON; this leaves room for verbose
# servers (logprobs, usage blocks) and refuses the rest.
MAX_BODY_BYTES = 4 << 20
_READ_SIZE = 64 << 10


class BodyError(Exception):
    """The body could not be read within the deadline or the cap; the message says which."""


def read_body(
    response: Any, deadline: float, max_bytes: int = MAX_BODY_BYTES, *, what: str = "reply"
) -> bytes:
    """The whole body of a streamed ``requests`` response, decompressed, or :class:`BodyError`.

    Reads return as soon as any bytes arrive, so the deadline is checked between them however
    slowly the server writes; a gzip or deflate body is inflated here, at most ``max_bytes``,
    so a compression bomb costs no more memory than a plain body at the cap.
    """
    declared = str(response.headers.get("Content-Length") or "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyError(f"the {what} is {int(declared):,} bytes, over the {max_bytes:,} cap")
    inflate = _decoder(str(response.headers.get("Content-Encoding") or "identity"))
    body = bytearray()
    while True:
        if time.monotonic() > deadline:
            raise BodyError(f"the {what} did not arrive in time (server too slow or trickling)")
        chunk = response.raw.read1(_READ_SIZE, decode_content=False)
        if not chunk:
            break
        if inflate is not None:
            chunk = inflate.decompress(chunk, max_bytes + 1 - len(body))
        body += chunk
        if len(body) > max_bytes or (inflate is not None and inflate.unconsumed_tail):
            raise BodyError(f"the {what} is over the {max_bytes:,} byte cap (decompressed)")
    if inflate is not None:
        body += inflate.decompress(b"", max_bytes + 1 - len(body))
        if len(body) > max_bytes or inflate.unconsumed_tail:
            raise BodyError(f"the {what} is over the {max_bytes:,} byte cap (decompressed)")
    return bytes(body)


def _decoder(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise BodyError(f"the reply uses Content-Encoding {encoding!r}, which labmake does not read")


# Terminal escape sequences (CSI, OSC, and two-character ones), then any other control
# character but newline and tab: NUL, BEL, backspace, carriage return, DEL, C1 controls.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_answer(text: str) -> str:
    """``text`` without terminal escapes and control characters (newlines and tabs stay): they
    would reach training data, records and terminals, and no answer needs them."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


_AUTH_ECHO = re.compile(
    r"(?i)(authorization|proxy-authorization|api[-_]?key|x-api-key)(\W{1,4})[^\s\"',;}]+"
    r"(?:\s+[^\s\"',;}]+)?"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """A server's text as it may appear in a message or a log: the given secrets and anything
    that looks like a credential (an echoed Authorization header, a bearer token) replaced by
    ``[redacted]``, control characters removed, on one line."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _AUTH_ECHO.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    return " ".join(clean_answer(text).split())
