"""The canary: the real llama.cpp decodes the embedded model through both teacher paths.

This directory sorts first, so it runs in the suite's first minute. It runs in a child process:
a llama.cpp that crashes (a native build's AMX kernels, a stale wheel from a warm cache) kills
that child, not pytest, and the run stops at once with a message that points at the lock
instead of dying later in a bare segmentation fault.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.model

CHILD = r"""
import json, os
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Request
from labmake.teacher.registry import open_teacher
prompt = "Q: What falls from clouds when they are full of water?\nA:"
out = {}
for n_parallel in (1, 2):
    teacher = open_teacher(TeacherConfig(n_parallel=n_parallel, n_ctx=256, max_tokens=8))
    requests = [Request(prompt, seed=seed, max_tokens=8, stop=("\n",)) for seed in (1, 2)]
    texts = {}
    teacher_many = getattr(teacher, "complete_many", None)
    if teacher_many is None:
        for i, r in enumerate(requests):
            texts[i] = teacher.complete(r)
    else:
        teacher_many(requests, lambda i, c: texts.__setitem__(i, c))
    out[n_parallel] = [texts[i].completion_tokens for i in range(len(requests))]
    teacher.close()
print(json.dumps(out))
"""

FIX = (
    "The installed llama-cpp-python is not the build `make setup` makes from requirements.lock "
    "(a wheel from another machine's or an older cache?). Reinstall exactly the lock: "
    "`rm -rf .venv && make setup`; see the README, 'llama.cpp on every x86 CPU'."
)


def test_llama_cpp_decodes_the_embedded_model_one_by_one_and_batched():
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        pytest.exit(f"canary: llama.cpp did not finish 16 tokens in 300 s. {FIX}", returncode=1)
    if result.returncode < 0:
        name = signal.Signals(-result.returncode).name
        pytest.exit(
            f"canary: llama.cpp crashed ({name}) decoding the embedded model. {FIX}\n"
            f"{result.stderr[-2000:]}",
            returncode=1,
        )
    assert result.returncode == 0, f"{FIX}\n{result.stderr[-4000:]}"
    tokens = json.loads(result.stdout.strip().splitlines()[-1])
    # Both paths decoded something for every request (a stop at "\n" may end one early).
    assert set(tokens) == {"1", "2"}
    assert all(n >= 1 for counts in tokens.values() for n in counts), tokens
