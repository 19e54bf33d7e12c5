"""One teacher process per allocation: loaded once, the same answers, and it goes away."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labmake.core.config import TeacherConfig
from labmake.teacher import shared
from labmake.teacher.complete import complete_all
from labmake.teacher.protocol import Request, TeacherError
from labmake.teacher.registry import loads_model, open_teacher
from labmake.testing.fake_teacher import FakeTeacher

FAKE = TeacherConfig(backend="fake-for-tests")
REQUESTS = [
    Request(f"Question: what is item {i}?\nAnswer:", seed=100 + i, max_tokens=40) for i in range(5)
]


@pytest.fixture
def share(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Sharing on, with the socket folder in a short temporary folder of this test's own."""
    root = Path(tempfile.mkdtemp(prefix="lm-", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv(shared.SHARE_ENV, "on")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    yield root / f"labmake-teacher-{os.getuid()}"
    for pid_file in root.rglob("*.log"):
        _stop_servers(pid_file)
    shutil.rmtree(root, ignore_errors=True)


def _stop_servers(log_file: Path) -> None:
    for line in log_file.read_text().splitlines():
        if "(pid " in line and " loaded " in line:
            pid = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pid(teacher) -> int:
    return int(teacher.where.split()[1])


def test_jobs_share_one_load_and_get_the_answers_of_their_own_teacher(share, caplog):
    caplog.set_level(logging.INFO, logger="labmake.teacher.shared")
    alone = open_teacher(FAKE)
    expected = complete_all(alone, REQUESTS, "alone")
    first = shared.open_for_job(FAKE)
    assert isinstance(first, shared.SharedTeacher) and first.identity == alone.identity
    got = complete_all(first, REQUESTS, "first")
    assert [c.text for c in got] == [c.text for c in expected]
    assert first.count_tokens("one two three") == alone.count_tokens("one two three")
    first.close()
    second = shared.open_for_job(FAKE)  # the next job of the allocation
    assert _pid(second) == _pid(first)
    assert second.complete(REQUESTS[0]).text == expected[0].text
    second.close()
    lines = [r.getMessage() for r in caplog.records]
    assert sum("teacher: loaded" in line for line in lines) == 1, lines
    assert any("no load in this job" in line and "job 2" in line for line in lines), lines


def test_a_dead_teacher_process_is_a_clear_error_and_the_next_job_starts_another(share):
    teacher = shared.open_for_job(FAKE)
    os.kill(_pid(teacher), signal.SIGKILL)
    time.sleep(0.2)
    with pytest.raises(TeacherError, match="stopped answering.*run the build again"):
        teacher.complete(REQUESTS[0])
    teacher.close()
    again = shared.open_for_job(FAKE)
    assert _pid(again) != _pid(teacher)
    assert again.complete(REQUESTS[1]).text
    again.close()


def test_an_idle_teacher_process_stops_and_removes_its_socket(share, monkeypatch):
    monkeypatch.setattr(shared, "IDLE_S", 1)
    teacher = shared.open_for_job(FAKE)
    pid = _pid(teacher)
    teacher.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    assert not _alive(pid)
    assert not list(share.glob("*.sock"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of this test's process counts as gone.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def test_a_folder_other_users_can_enter_is_refused(share):
    share.mkdir(mode=0o755)
    share.chmod(0o755)
    with pytest.raises(TeacherError, match="mode 0700"):
        shared.open_for_job(FAKE)


def test_off_and_outside_an_allocation_the_job_loads_its_own(monkeypatch):
    monkeypatch.delenv(shared.SHARE_ENV, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert isinstance(shared.open_for_job(FAKE), FakeTeacher)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert shared.sharing_on()
    monkeypatch.setenv(shared.SHARE_ENV, "off")
    assert not shared.sharing_on()
    # A client of a server has nothing to load: never shared.
    assert not loads_model("openai") and loads_model("llama-cpp")
