"""TEST-ONLY: a fake OpenAI-compatible server that fails on purpose.

It serves ``POST /v1/completions`` and ``/v1/chat/completions`` on loopback from a thread. A
*rule* picks each request's fate from its arrival number and JSON body: ``ok`` (a deterministic
answer made from the prompt and seed), ``500``, ``503``, ``429`` (with ``Retry-After: 0``),
``401``, ``404``, ``400``, ``timeout`` (answers only after ``hang_s``), ``slow`` (the same, for
requests meant to succeed), ``malformed`` (200 with a
body that is not a completion) or ``drop`` (closes the connection without a word). Every request
is recorded (body and whether an ``Authorization`` header came) for the test to inspect.

Hostile servers: ``trickle`` (a good answer, one byte every ``trickle_s``), ``huge`` (200 and
``huge_bytes`` of body with no Content-Length, until the client hangs up), ``gzip_bomb`` (a
small gzip body that inflates to ``bomb_bytes``), ``echo_auth`` (404 whose body repeats the
request's Authorization header) and ``control`` (an answer full of NUL bytes and terminal
escapes). ``sent_bytes`` counts the body bytes the server managed to write.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Rule = Callable[[int, dict[str, Any]], str]


def answer_text(prompt: str, seed: int) -> str:
    """What the server answers for ``ok``; a test can compute the expected text."""
    tag = hashlib.sha256(f"{seed}\x1f{prompt}".encode()).hexdigest()[:12]
    return f" answer {tag}\nQ: a trailing item the stop string cuts off"


def scripted(fates: Sequence[str]) -> Rule:
    """The n-th request gets fates[n]; every later request gets ``ok``."""

    def rule(n: int, _body: dict[str, Any]) -> str:
        return fates[n] if n < len(fates) else "ok"

    return rule


@dataclass
class FaultServer:
    rule: Rule
    hang_s: float = 2.0
    received: list[dict[str, Any]] = field(default_factory=list)
    authorized: list[bool] = field(default_factory=list)
    max_in_flight: int = 0  # the most requests it was answering at one time
    url: str = ""
    trickle_s: float = 0.3
    huge_bytes: int = 300 << 20
    bomb_bytes: int = 400 << 20
    sent_bytes: int = 0
    _in_flight: int = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with lock:
                    n = len(server.received)
                    server.received.append(body)
                    server.authorized.append("Authorization" in self.headers)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                fate = server.rule(n, body)
                try:
                    self._serve(fate, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to do
                finally:
                    with lock:
                        server._in_flight -= 1

            def _serve(self, fate: str, body: dict[str, Any]) -> None:
                if not self.path.endswith(("/completions", "/chat/completions")):
                    self._send(404, b'{"error": "no such endpoint"}')
                elif fate == "ok":
                    self._send(200, json.dumps(_completion(body)).encode())
                elif fate in ("timeout", "slow"):
                    time.sleep(server.hang_s)
                    self._send(200, json.dumps(_completion(body)).encode())
                elif fate == "malformed":
                    self._send(200, b'{"choices": [{"nothing": "here"}')
                elif fate == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif fate == "429":
                    self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                elif fate in _HOSTILE:
                    _HOSTILE[fate](self, server, body)
                elif fate.isdigit():
                    self._send(int(fate), json.dumps({"error": f"fault {fate}"}).encode())
                else:
                    raise ValueError(f"fault_server: unknown fate {fate!r}")

        return Handler

    @contextmanager
    def running(self) -> Iterator[FaultServer]:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()


def _headers(handler: Any, status: int, extra: dict[str, str]) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for k, v in extra.items():
        handler.send_header(k, v)
    handler.end_headers()


def _write(handler: Any, server: FaultServer, data: bytes) -> None:
    handler.wfile.write(data)
    handler.wfile.flush()
    server.sent_bytes += len(data)


def _trickle(handler: Any, server: FaultServer, body: dict[str, Any]) -> None:
    payload = json.dumps(_completion(body)).encode()
    _headers(handler, 200, {"Content-Length": str(len(payload))})
    for i in range(len(payload)):
        _write(handler, server, payload[i : i + 1])
        time.sleep(server.trickle_s)


def _huge(handler: Any, server: FaultServer, _body: dict[str, Any]) -> None:
    handler.close_connection = True  # no Content-Length: the body ends when the server hangs up
    _headers(handler, 200, {})
    block = b'{"choices": [{"text": "' + b"x" * (1 << 20)
    sent = 0
    while sent < server.huge_bytes:
        _write(handler, server, block)
        sent += len(block)


def _gzip_bomb(handler: Any, server: FaultServer, _body: dict[str, Any]) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1 << 20)
    payload = b"".join(packer.compress(zeros) for _ in range(server.bomb_bytes >> 20))
    payload += packer.flush()
    _headers(handler, 200, {"Content-Encoding": "gzip", "Content-Length": str(len(payload))})
    _write(handler, server, payload)


def _echo_auth(handler: Any, server: FaultServer, _body: dict[str, Any]) -> None:
    echoed = handler.headers.get("Authorization", "")
    payload = json.dumps({"error": "no such route", "request": {"Authorization": echoed}})
    payload += f" (you sent Authorization: {echoed})"
    data = payload.encode()
    _headers(handler, 404, {"Content-Length": str(len(data))})
    _write(handler, server, data)


def _control(handler: Any, server: FaultServer, body: dict[str, Any]) -> None:
    completion = _completion(body)
    choice = completion["choices"][0]
    dirty = " \x1b[31mred\x1b[0m answer\x00 with\x07 bell\x1b]0;title\x07 and\r\ttab\x7f"
    if "message" in choice:
        choice["message"]["content"] = dirty
    else:
        choice["text"] = dirty
    data = json.dumps(completion).encode()
    _headers(handler, 200, {"Content-Length": str(len(data))})
    _write(handler, server, data)


_HOSTILE = {
    "trickle": _trickle,
    "huge": _huge,
    "gzip_bomb": _gzip_bomb,
    "echo_auth": _echo_auth,
    "control": _control,
}


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body.get("prompt")
    if prompt is None:
        prompt = body["messages"][-1]["content"]
    text = answer_text(prompt, int(body.get("seed", 0)))
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if "messages" in body:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "object": "text_completion",
        "choices": [choice],
        "usage": {"completion_tokens": len(text.split())},
    }
