"""teacher.serve without a model: its config checks, the argv, the identity, and the stopping."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labmake.core import config
from labmake.core.config import ConfigError, TeacherConfig
from labmake.teacher import served
from labmake.teacher.protocol import TeacherError

ROOT = Path(__file__).resolve().parents[2]
LLAMA = ("python", "-m", "labmake.core.llama", "--model", "{gguf}", "--port", "{port}")


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_the_shipped_params_serve_nothing_and_a_list_loads_as_a_tuple():
    assert config.load(ROOT / "params.yaml").teacher.serve is None
    raw = raw_params()
    raw["teacher"].update(backend="openai", serve=list(LLAMA))
    cfg = config.validate(raw).teacher
    assert cfg.serve == LLAMA and cfg.base_url is None and cfg.model is None


@pytest.mark.parametrize(
    ("serve", "problem"),
    [("python -m x --port {port}", "must be of list type"), ([], "min length is 1")],
)
def test_serve_must_be_a_non_empty_list(serve, problem):
    raw = raw_params()
    raw["teacher"].update(backend="openai", serve=serve)
    with pytest.raises(ConfigError, match=f"teacher.serve: {problem}"):
        config.validate(raw)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"backend": "llama-cpp"}, r"only teacher\.backend openai .* set teacher\.backend: openai"),
        ({"base_url": "http://127.0.0.1:8000/v1"}, r"set teacher\.base_url: null"),
        (
            {"serve": (*LLAMA, "--alias", "{model}")},
            r"serve\[8\] '\{model\}' .*unknown .*\{model\}",
        ),
        ({"serve": (*LLAMA, "{port.real}")}, r"unknown placeholder\(s\) \{port\.real\}"),
        ({"serve": (*LLAMA, "{}")}, r"unknown placeholder\(s\) \{\}"),
        (
            {"serve": (*LLAMA, "--x={port:d}")},
            r"unknown placeholder\(s\) \{port:d\}; the only ones are \{port\} and \{gguf\}",
        ),
        (
            {"serve": (*LLAMA, "{'a': 1}")},
            r"unknown placeholder\(s\) \{'a': 1\}.*literal brace as \{\{",
        ),
        ({"serve": (*LLAMA, "{port")}, r"serve\[7\] '\{port': expected '\}'"),
        ({"serve": ("vllm", "serve", "/models/granite")}, r"never passes \{port\}"),
    ],
)
def test_config_errors_name_the_key_and_the_fix(changes, problem):
    fields = {"backend": "openai", "serve": LLAMA, **changes}
    with pytest.raises(ConfigError, match=problem):
        TeacherConfig(**fields)


def test_the_judge_section_names_its_own_keys():
    raw = raw_params()
    raw["evaluate"]["judge"] = {"backend": "llama-cpp", "serve": list(LLAMA)}
    with pytest.raises(ConfigError, match=r"evaluate\.judge\.serve .*evaluate\.judge\.backend"):
        config.validate(raw)


def test_only_the_two_placeholders_are_replaced_and_doubled_braces_are_literal():
    cfg = TeacherConfig(backend="openai", serve=(*LLAMA, '--json={{"a": 1}}', "{port}{gguf}"))
    argv = served.render(cfg.serve, port=8123, gguf="/m/a b.gguf")
    assert argv[4:7] == ["/m/a b.gguf", "--port", "8123"]
    assert argv[7:] == ['--json={"a": 1}', "8123/m/a b.gguf"]
    assert served.uses_gguf(cfg)
    assert not served.uses_gguf(TeacherConfig(backend="openai", serve=("vllm", "{port}")))


def test_the_identity_has_no_port_and_follows_the_template_and_the_gguf_bytes(tmp_path):
    gguf = tmp_path / "a.gguf"
    gguf.write_bytes(b"GGUF one")
    cfg = TeacherConfig(backend="openai", serve=LLAMA)
    name = served.identity(cfg, gguf)
    assert name.startswith("served:") and name.endswith(f"#{served.SERVED_MODEL}")
    moved = tmp_path / "b.gguf"
    gguf.rename(moved)
    assert served.identity(cfg, moved) == name  # the bytes, not where they are
    moved.write_bytes(b"GGUF two")
    assert served.identity(cfg, moved) != name
    other = TeacherConfig(backend="openai", serve=(*LLAMA, "--n_ctx", "512"), model="m")
    assert served.identity(other, moved).endswith("#m")
    assert served.identity(other, moved).split("#")[0] != served.identity(cfg, moved).split("#")[0]


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except FileNotFoundError:
        return False


def test_stop_ends_exactly_the_group_it_started_even_a_child_ignoring_sigterm(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(served, "STOP_GRACE_S", 1.0)
    pids = tmp_path / "pids"
    # The command forks a worker that ignores SIGTERM, then waits: SIGKILL must reach it.
    script = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
        f"open({str(pids)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = served.ServedProcess([sys.executable, "-c", script], 0, None)
        deadline = time.monotonic() + 20
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.running()
        assert os.getpgid(process.pid) == process.pid != os.getpgid(0)
        worker_pids = [
            int(p) for p in os.listdir("/proc") if p.isdigit() and _group(int(p)) == process.pid
        ]
        assert len(worker_pids) == 2
        start = time.monotonic()
        process.stop()
        assert time.monotonic() - start < 5
        deadline = time.monotonic() + 5  # SIGKILL lands when the kernel schedules it
        while any(_alive(p) for p in worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(p) for p in worker_pids)
        assert bystander.poll() is None  # not in the group: untouched
    finally:
        bystander.kill()
        bystander.wait()


def _group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_a_command_that_is_not_there_is_a_clear_error(tmp_path):
    with pytest.raises(TeacherError, match=r"teacher\.serve: cannot start `no-such-server-x"):
        served.ServedProcess(["no-such-server-x", "--port", "1"], 1, None)


def test_a_command_that_exits_is_reported_with_the_end_of_its_output(tmp_path):
    log = tmp_path / "teacher.log"  # the teacher process's log, where the command writes too
    log.write_text("an older run's line\n")
    script = f"import sys; open({str(log)!r}, 'a').write('no model here\\n'); sys.exit(3)"
    process = served.ServedProcess([sys.executable, "-c", script], served.free_port(), log)
    with pytest.raises(TeacherError) as err:
        process.wait_ready(30)
    message = str(err.value)
    assert "exited (3)" in message and "sys.exit(3)" in message  # the command
    assert "no model here" in message and "an older run" not in message  # its output, this run
    assert process.process.returncode == 3 and not process.running()
