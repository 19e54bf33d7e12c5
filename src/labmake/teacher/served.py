"""A teacher the build serves itself: ``teacher.serve`` names an OpenAI-compatible server.

The operator's command (llama.cpp's server for a GGUF; vLLM or any other for a Hugging Face
model) is started only by a teacher process of :mod:`labmake.teacher.shared_server`, never by a
job: so one server answers every job of an allocation when sharing is on, and a job that dies,
even by SIGKILL, leaves no server behind (its teacher process watches it). This module starts
the command, waits until it answers, and stops exactly it:

- It runs in a process group of its own (a new session), so stopping it reaches the processes
  it forks (vLLM's workers) and nothing else. On Linux it also gets a parent-death signal: if
  the teacher process is SIGKILLed, the server is sent SIGTERM by the kernel.
- Its output goes to the teacher process's log; when it exits before answering, the error
  names the command and quotes the end of that output.
- Stopping: SIGTERM to the group, up to ``STOP_GRACE_S`` for the command to exit, then SIGKILL
  to whatever of the group is left. The command is reaped only after that, so its pid, which
  is the group's id, cannot have been reused by another process in between.
- Identity: the port changes every run, so the teacher's identity (part of every request cache
  key) comes from the command's template and the served GGUF's bytes, never from the URL: a
  re-run is answered by the cache. A template without ``{gguf}`` names its model itself (vLLM's
  path): like the openai backend's, that identity is the name, not the bytes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import requests

from labmake.core.artifacts import sha256_file
from labmake.core.config import TeacherConfig
from labmake.core.models import StudentError, resolve_gguf
from labmake.core.params_checks import serve_placeholders
from labmake.teacher.openai_compat import OpenAITeacher
from labmake.teacher.protocol import TeacherError

SERVED_MODEL = "served"  # teacher.model when null: llama.cpp's servers answer to any name
STOP_GRACE_S = 10.0  # after SIGTERM, before SIGKILL
READY_POLL_S = 0.25
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TAIL_LINES = 6
# The teacher process's log records carry its pid, so the tail of the command's output (which
# goes to the same file) can leave them out.
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def model_name(cfg: TeacherConfig) -> str:
    return cfg.model or SERVED_MODEL


def uses_gguf(cfg: TeacherConfig) -> bool:
    return any("gguf" in serve_placeholders(item) for item in cfg.serve or ())


def free_port() -> int:
    """A TCP port nothing listens on now, on 127.0.0.1 (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(template: tuple[str, ...], *, port: int, gguf: str) -> list[str]:
    """The argv: exactly ``{port}`` and ``{gguf}`` replaced (params_checks allows no others)."""
    return [item.format(port=port, gguf=gguf) for item in template]


def identity(cfg: TeacherConfig, gguf: Path | None) -> str:
    """``served:<hash of the template and the GGUF's sha256>#<model>``: no port in it."""
    digest = hashlib.sha256(json.dumps(list(cfg.serve or ())).encode())
    if gguf is not None:
        digest.update(f"\ngguf sha256 {sha256_file(gguf)}".encode())
    return f"served:{digest.hexdigest()[:16]}#{model_name(cfg)}"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when its parent dies (None elsewhere).

    libc is looked up here, before the fork: the child only makes the call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent, term = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, term)
        if os.getppid() != parent:  # the parent died before the call took effect
            os.kill(os.getpid(), term)

    return preexec


class ServedProcess:
    """The running server command, its URL, and how to stop exactly its process group."""

    def __init__(self, argv: list[str], port: int, log_path: Path | None) -> None:
        self.shown = shlex.join(argv)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._log_path = log_path
        self._log_start = log_path.stat().st_size if log_path and log_path.exists() else 0
        try:
            # Must run before the caller starts any thread (a preexec_fn and threads mix badly).
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            raise TeacherError(
                f"params.yaml: teacher.serve: cannot start `{self.shown}` ({exc.strerror or exc})"
                "; give the command as a list whose first item is a program on PATH or a path"
            ) from None
        self.pid = self.process.pid

    def running(self) -> bool:
        """Whether the command runs, without reaping it (its pid stays the group's own)."""
        if self.process.returncode is not None:
            return False
        if not hasattr(os, "waitid"):
            return self.process.poll() is None
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.pid, flags) is None
        except ChildProcessError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        """Until GET {base_url}/models answers 200; a TeacherError (and the group stopped) if
        the command exits first or does not answer within ``timeout_s``."""
        url = f"{self.base_url}/models"
        deadline = time.monotonic() + timeout_s
        with requests.Session() as session:
            session.trust_env = False  # a site's HTTP proxy must not see 127.0.0.1
            while self.running():
                with suppress(requests.RequestException):
                    if session.get(url, timeout=2).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    self.stop()
                    raise TeacherError(
                        f"teacher.serve: `{self.shown}` did not answer at {url} within "
                        f"{timeout_s:g} s, so it was stopped; its output ends: {self.tail()}"
                    )
                time.sleep(READY_POLL_S)
        self.stop()
        raise TeacherError(
            f"teacher.serve: `{self.shown}` exited ({self.process.returncode}) before it "
            f"answered at {url}; its output ends: {self.tail()}"
        )

    def tail(self) -> str:
        """The last lines the command wrote to the log since it started (not this process's)."""
        if self._log_path is None:
            return "(not recorded: no --log)"
        own = f" [{os.getpid()}] "
        with suppress(OSError), open(self._log_path, "rb") as log:
            log.seek(self._log_start)
            lines = log.read().decode(errors="replace").splitlines()
            lines = [line.strip()[-300:] for line in lines if line.strip() and own not in line]
            return " | ".join(lines[-TAIL_LINES:]) or "(nothing)"
        return f"(see {self._log_path})"

    def stop(self) -> None:
        """SIGTERM to its group, up to STOP_GRACE_S, SIGKILL to what is left; then reaped."""
        if self.process.returncode is not None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # workers that outlived it, or all of it
        self.process.wait()


def bypass_proxies_for_loopback() -> None:
    """Requests to 127.0.0.1 go straight to the server, whatever a site's http_proxy says.

    Only ever called in the teacher process, whose environment is its own."""
    for name in ("no_proxy", "NO_PROXY"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h.strip()]
        os.environ[name] = ",".join([*hosts, "127.0.0.1", "localhost"])


def open_served(
    cfg: TeacherConfig,
    log_path: Path | None,
    timeout_s: float,
    started: Callable[[ServedProcess], None],
) -> OpenAITeacher:
    """Start ``teacher.serve``, tell ``started`` (which must be able to stop it from then on),
    wait until it answers, and return the openai client of it, with the served identity."""
    gguf: Path | None = None
    if uses_gguf(cfg):
        try:
            gguf = resolve_gguf(cfg.gguf).resolve()
        except StudentError as exc:
            raise TeacherError(f"teacher.serve uses {{gguf}}: {exc}") from None
    port = free_port()
    argv = render(cfg.serve or (), port=port, gguf=str(gguf or ""))
    process = ServedProcess(argv, port, log_path)
    started(process)
    try:
        name = identity(cfg, gguf)  # hashing a big GGUF overlaps the server's load
        process.wait_ready(timeout_s)
        bypass_proxies_for_loopback()
        client_cfg = dataclasses.replace(
            cfg, serve=None, base_url=process.base_url, model=model_name(cfg)
        )
        teacher = OpenAITeacher(client_cfg)
    except BaseException:
        process.stop()
        raise
    teacher.identity = name
    return teacher
