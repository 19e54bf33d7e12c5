"""Teachers on the tiny GGUF: the batched llama-cpp decoder, and a REAL llama.cpp server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from labmake.core.config import TeacherConfig  # noqa: E402
from labmake.teacher.cache import RequestCache  # noqa: E402
from labmake.teacher.complete import complete_all  # noqa: E402
from labmake.teacher.llamacpp import BatchedLlamaCppTeacher, LlamaCppTeacher  # noqa: E402
from labmake.teacher.protocol import Request  # noqa: E402

pytestmark = pytest.mark.model

PROMPTS = [
    "The water cycle moves water between the oceans, the air and the land.",
    "Sunlight warms the sea, and water evaporates into the air.",
    "Clouds form when vapour cools.",
    "Rain falls back to the ground.",
    "Rivers carry water back to the sea, and the cycle begins again.",
]


def reqs() -> list[Request]:
    # Stops the random tiny model may or may not produce; max_tokens caps the rest.
    return [Request(p, 40 + i, 24, ("\n\n", "zz")) for i, p in enumerate(PROMPTS)]


def cfg(gguf: Path, **kw) -> TeacherConfig:
    return TeacherConfig(gguf=str(gguf), n_ctx=256, n_threads=2, temperature=0.8, **kw)


def texts(completions) -> list[str]:
    return [c.text for c in completions]


def test_batched_decoding_is_deterministic_and_resumes_byte_identical(
    tiny_student_gguf: Path, tmp_path: Path
):
    teacher = BatchedLlamaCppTeacher(cfg(tiny_student_gguf, n_parallel=3), tiny_student_gguf)
    try:
        first = complete_all(teacher, reqs(), "batched")
        again = complete_all(teacher, reqs(), "batched")
        cache = RequestCache(tmp_path)
        cached = complete_all(teacher, reqs(), "batched", cache=cache)
    finally:
        teacher.close()
    assert first == again == cached
    assert all(c.completion_tokens > 0 for c in first)
    assert all(c.finished or c.completion_tokens == 24 for c in first)
    assert len(set(texts(first))) == len(PROMPTS)  # per-request seeds and prompts

    # A fresh process-level instance, resuming from a cache with answers lost mid-group.
    entries = sorted(tmp_path.glob("??/*.json"), key=lambda p: json.loads(p.read_text())["seed"])
    entries[1].unlink()  # group 0 = requests 0-2
    fresh = BatchedLlamaCppTeacher(cfg(tiny_student_gguf, n_parallel=3), tiny_student_gguf)
    try:
        resumed = complete_all(fresh, reqs(), "batched", cache=cache)
    finally:
        fresh.close()
    assert resumed == first


def test_single_sequence_path_is_deterministic(tiny_student_gguf: Path):
    # The n_parallel: 1 fallback goes through Llama.create_completion. Its text may differ from
    # the batched decoder's (a batch's shape changes float rounding); each is deterministic.
    teacher = LlamaCppTeacher(cfg(tiny_student_gguf, n_parallel=1), tiny_student_gguf)
    try:
        a = complete_all(teacher, reqs(), "single")
        b = complete_all(teacher, list(reversed(reqs())), "single")
    finally:
        teacher.close()
    assert texts(a) == list(reversed(texts(b)))  # order of requests does not matter
    assert all(c.completion_tokens > 0 for c in a)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def llama_server(tiny_student_gguf: Path, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "labmake.core.llama", "--model", str(tiny_student_gguf)]
        + ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "256", "--n_threads", "2"]
        + ["--model_alias", "tiny"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {(tmp_path / 'server.log').read_text()}")
            try:
                if requests.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_openai_backend_against_a_real_llama_cpp_server(llama_server: str, tmp_path: Path):
    from labmake.teacher.registry import open_teacher

    teacher = open_teacher(
        TeacherConfig(
            backend="openai",
            base_url=llama_server,
            model="tiny",
            n_ctx=256,
            temperature=0.8,
            concurrency=2,
            timeout_s=30,
        )
    )
    cache = RequestCache(tmp_path)
    out = complete_all(teacher, reqs(), "server", cache=cache)
    assert all(c.error is None and c.completion_tokens > 0 for c in out)
    assert all(c.teacher == f"openai:{llama_server}#tiny" for c in out)
    # The server honours the seed: asked again (bypassing the cache), the same text comes back.
    again = complete_all(teacher, reqs()[:2], "server")
    assert texts(again) == texts(out)[:2]
    # And the cache answers a rerun without a single request.
    assert complete_all(teacher, reqs(), "server", cache=cache) == out and cache.hits == 5
    teacher.close()
