"""`labmake serve MODEL.gguf`: llama.cpp's OpenAI-compatible server on loopback, for real."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp.server")

pytestmark = pytest.mark.model

STARTUP_S = 120  # imports + model load on a busy 2-core machine


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tiny_student_gguf: Path, tmp_path: Path):
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "labmake.cli", "serve", str(tiny_student_gguf), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
        start_new_session=True,  # its own process group: the server child is stopped with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"labmake serve exited: {(tmp_path / 'serve.log').read_text()[-3000:]}")
            try:
                models = _get(f"{base}/v1/models")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail("labmake serve did not answer in time")
                time.sleep(0.5)
        yield base, models
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_serve_answers_openai_requests_on_loopback(server, tiny_student_gguf: Path) -> None:
    base, models = server
    assert [m["id"] for m in models["data"]] == [str(tiny_student_gguf)]
    chat = _post(
        f"{base}/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "What is rain?"}],
            "max_tokens": 6,
            "temperature": 0.0,
        },
    )
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    assert chat["usage"]["completion_tokens"] > 0
    completion = _post(
        f"{base}/v1/completions", {"prompt": "The water cycle", "max_tokens": 6, "temperature": 0}
    )
    assert completion["choices"][0]["text"] and completion["usage"]["completion_tokens"] > 0
    # Loopback only by default: the server is not reachable on another address of this host.
    assert _listening_addresses(base) == {"127.0.0.1"}


def _listening_addresses(base: str) -> set[str]:
    port = int(base.rsplit(":", 1)[1])
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, local_port = local.split(":")
        if state == "0A" and int(local_port, 16) == port:  # 0A: LISTEN
            out.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return out
