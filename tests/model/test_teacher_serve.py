"""teacher.serve with a REAL llama.cpp server (labmake.core.llama) on the tiny GGUF: labmake
starts it, answers through it, shares it within an allocation, and never leaves it behind."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from labmake.core.config import TeacherConfig  # noqa: E402
from labmake.teacher import shared  # noqa: E402
from labmake.teacher.cache import RequestCache  # noqa: E402
from labmake.teacher.complete import complete_all  # noqa: E402
from labmake.teacher.protocol import Request, TeacherError  # noqa: E402

pytestmark = pytest.mark.model

SERVE = (sys.executable, "-m", "labmake.core.llama", "--model", "{gguf}")
SERVE += ("--host", "127.0.0.1", "--port", "{port}", "--n_ctx", "256", "--n_threads", "2")
PROMPTS = [
    "The water cycle moves water between the oceans, the air and the land.",
    "Sunlight warms the sea, and water evaporates into the air.",
    "Clouds form when vapour cools.",
    "Rain falls back to the ground.",
]
REQUESTS = [Request(p, 40 + i, 16, ("\n\n",)) for i, p in enumerate(PROMPTS)]


def served_cfg(gguf: Path, **kw) -> TeacherConfig:
    fields = {"backend": "openai", "gguf": str(gguf), "n_ctx": 256, "temperature": 0.8}
    return TeacherConfig(**{**fields, "timeout_s": 30, "concurrency": 2, "serve": SERVE, **kw})


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short temporary folder for the teacher processes' sockets; sharing off, no SLURM.
    Whatever a failed test left running is stopped after it."""
    path = Path(tempfile.mkdtemp(prefix="lm-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.setenv(shared.SHARE_ENV, "off")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    yield path
    for log in path.rglob("*.log"):
        for pid in map(int, re.findall(r"\(pid (\d+)", log.read_text())):
            with contextlib.suppress(OSError):  # only ours: a pid may have been reused since
                if b"labmake" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet has stopped)."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def gone_within(seconds: float, *pids: int) -> float | None:
    """Seconds until none of ``pids`` runs, or None if some still run after ``seconds``."""
    start = time.monotonic()
    while any(alive(p) for p in pids):
        if time.monotonic() - start > seconds:
            return None
        time.sleep(0.05)
    return time.monotonic() - start


def teacher_pid(teacher: shared.SharedTeacher) -> int:
    return int(teacher.where.split()[1])


def test_answers_are_deterministic_and_a_rerun_on_another_port_is_cached(
    root, tiny_student_gguf, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="labmake.teacher.shared")
    cfg = served_cfg(tiny_student_gguf)
    cache = RequestCache(tmp_path / "cache")
    first = shared.open_for_job(cfg)
    try:
        out = complete_all(first, REQUESTS, "served", cache=cache)
    finally:
        first.close()
    assert isinstance(first, shared.SharedTeacher) and first.private
    assert all(c.error is None and c.completion_tokens > 0 for c in out)
    assert {c.teacher for c in out} == {first.identity}
    assert first.identity.startswith("served:") and first.identity.endswith("#served")
    assert "127.0.0.1" not in first.identity

    second = shared.open_for_job(cfg)  # the next run: another server, on another free port
    try:
        assert second.server_pid != first.server_pid
        assert second.identity == first.identity
        again = complete_all(second, REQUESTS, "served")  # asked again: the seeds decide
        cached = complete_all(second, REQUESTS, "served", cache=cache)
    finally:
        second.close()
    assert [c.text for c in again] == [c.text for c in out]
    assert cached == out and cache.hits == len(REQUESTS)
    loads = [r.getMessage() for r in caplog.records if "teacher: loaded" in r.getMessage()]
    assert len(loads) == 2 and all("this job's own teacher process" in line for line in loads)
    print(f"model loads: {len(loads)} for 2 runs with sharing off (one per job)")


def test_jobs_of_one_allocation_share_one_server_and_sigterm_stops_it(root, tiny_student_gguf):
    cfg = served_cfg(tiny_student_gguf)
    slurm = {"SLURM_JOB_ID": f"t{os.getpid()}"}  # two generate jobs of one allocation
    runs = [run_job(root, cfg, slurm, prompt) for prompt in PROMPTS[:2]]
    (supervisor, server, url, _), (*same, _) = (r[0] for r in runs)
    assert same == [supervisor, server, url]
    logs = "".join(r[1] for r in runs)
    loads = logs.count("teacher: loaded")
    assert loads == 1 and "in a shared teacher process" in runs[0][1], logs
    assert "no load in this job" in runs[1][1], logs
    print(f"model loads: {loads} for 2 jobs of one allocation")

    assert alive(server)  # between jobs it waits for the next one
    os.kill(supervisor, signal.SIGTERM)
    assert gone_within(15, supervisor, server) is not None
    assert not list(root.rglob("*.sock"))


def test_sharing_off_closing_the_teacher_stops_its_server(root, tiny_student_gguf):
    teacher = shared.open_for_job(served_cfg(tiny_student_gguf))
    supervisor, server = teacher_pid(teacher), teacher.server_pid
    assert teacher.private and alive(server) and f"pid{os.getpid()}-" in str(teacher._log_path)
    assert teacher.complete(REQUESTS[0]).completion_tokens > 0
    teacher.close()
    assert not alive(server) and not alive(supervisor)  # close() returns once both are gone
    assert not [p for p in root.rglob("*") if p.is_file()]  # its socket, key, config, log


JOB = """
import json, logging, sys, time
from labmake.core.config import TeacherConfig
from labmake.teacher import shared
from labmake.teacher.protocol import Request
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[1]).items()}
teacher = shared.open_for_job(TeacherConfig(**fields))
text = teacher.complete(Request(sys.argv[2], 1, 8)).text
pids = [int(teacher.where.split()[1]), teacher.server_pid, teacher.server_url, text]
print(json.dumps(pids), flush=True)
if sys.argv[3] == "stay":
    time.sleep(300)
teacher.close()
"""


def start_job(
    root: Path, cfg: TeacherConfig, env: dict[str, str], prompt: str = "Rain falls.", then="stay"
) -> subprocess.Popen[str]:
    """A generate job in a process of its own, opening ``cfg``'s served teacher."""
    env = {**os.environ, "TMPDIR": str(root), shared.SHARE_ENV: "off", **env}
    if "SLURM_JOB_ID" in env:
        env.pop(shared.SHARE_ENV)
    argv = [sys.executable, "-c", JOB, json.dumps(dataclasses.asdict(cfg)), prompt, then]
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


def run_job(root: Path, cfg: TeacherConfig, env: dict[str, str], prompt: str) -> tuple[list, str]:
    """(what the job printed, its log) of a job that runs to its end."""
    out, err = start_job(root, cfg, env, prompt, then="leave").communicate(timeout=120)
    return json.loads(out), err


def test_sharing_off_a_killed_job_leaves_no_server_behind(root, tiny_student_gguf):
    job = start_job(root, served_cfg(tiny_student_gguf), {})
    try:
        supervisor, server, _url, _text = json.loads(job.stdout.readline())
        assert alive(server)
    except BaseException:
        kill_job(job)
        raise
    took = kill_job(job, supervisor, server)
    assert took is not None, "the server outlived its killed job by more than 5 s"
    print(f"server gone {took:.1f} s after its job was killed")


def kill_job(job: subprocess.Popen, *pids: int) -> float | None:
    """SIGKILL the job (nothing of it runs to clean up); seconds until ``pids`` are gone."""
    job.kill()
    job.wait()
    return gone_within(5, *pids)


def test_a_job_killed_while_its_server_loads_leaves_nothing_behind(root):
    # No connection yet: the teacher process notices its job's death by watching its pid.
    script = "import time; print('loading', flush=True); time.sleep(120)"
    cfg = TeacherConfig(backend="openai", serve=(sys.executable, "-c", script, "{port}"))
    job = start_job(root, cfg, {})
    try:
        deadline = time.monotonic() + 30
        while not (found := _started(root)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert found, "the server command was not started"
        supervisor, server = found
        assert alive(supervisor) and alive(server)
    finally:
        took = kill_job(job, supervisor, server) if found else kill_job(job)
    assert took is not None, "the server outlived its killed job by more than 5 s"
    print(f"loading server gone {took:.1f} s after its job was killed")


def _started(root: Path) -> tuple[int, int] | None:
    """(teacher process, server command) pids once the teacher process has logged them."""
    for log in root.rglob("*.log"):
        found = re.search(
            r"\[(\d+)\] INFO .*teacher\.serve: started .*? \(pid (\d+)", log.read_text()
        )
        if found:
            return int(found[1]), int(found[2])
    return None


def test_a_killed_teacher_process_takes_its_server_along(root, tiny_student_gguf):
    teacher = shared.open_for_job(served_cfg(tiny_student_gguf))
    server = teacher.server_pid
    os.kill(teacher_pid(teacher), signal.SIGKILL)  # no handler runs: the kernel's signal does
    assert gone_within(5, server) is not None
    with pytest.raises(TeacherError, match="stopped answering"):
        teacher.complete(REQUESTS[0])
    teacher.close()


def test_a_server_command_that_exits_at_once_names_itself_and_its_output(root):
    script = "import sys; print('cannot serve on port', sys.argv[1]); sys.exit(3)"
    cfg = TeacherConfig(backend="openai", serve=(sys.executable, "-c", script, "{port}"))
    with pytest.raises(TeacherError) as err:
        shared.open_for_job(cfg)
    message = str(err.value)
    assert "exited (3)" in message and "sys.exit(3)" in message  # the command
    assert "cannot serve on port" in message  # the end of its output


def test_a_server_that_never_answers_is_stopped_at_the_deadline(root, monkeypatch):
    monkeypatch.setattr(shared, "LOAD_TIMEOUT_S", 2)
    script = "import time; print('loading forever', flush=True); time.sleep(120)"
    cfg = TeacherConfig(backend="openai", serve=(sys.executable, "-c", script, "{port}"))
    with pytest.raises(TeacherError, match=r"did not answer at http://127\.0\.0\.1:\d+/v1/models"):
        shared.open_for_job(cfg)
    (log,) = root.rglob("*.log")
    (server,) = re.findall(r"teacher\.serve: started .*? \(pid (\d+)", log.read_text())
    assert not alive(int(server))
