"""One teacher process per machine allocation, for every job there that needs the teacher.

On a cluster, profiles/slurm puts several leaves' teacher jobs into one allocation (the job
group ``teacher``). Each job is its own process, so a teacher loaded in-process would be loaded
once per leaf: minutes each for a 7B GGUF. Instead, the first teacher job of the allocation
starts a teacher process (:mod:`labmake.teacher.shared_server`) and every job of the allocation,
that one included, talks to it over a Unix socket in a folder only this user can open, with a
key written beside it. The process loads the model once and answers through the same backend
object an in-process teacher would be, with the same fixed groups of requests, so the answers
-- and the build's bytes -- are the same either way. It stops itself when no job has used it
for ``IDLE_S`` seconds, and SLURM ends it with the allocation.

Sharing is on inside a SLURM allocation (``SLURM_JOB_ID`` is set) and off elsewhere, where jobs
may run side by side and each gets its own teacher. ``LABMAKE_TEACHER_SHARE=on`` turns it on
anywhere (a workstation building many leaves one after another with a big teacher), ``off``
turns it off. A backend that is only a client of a server (openai) is never shared: it has no
model to load.

A served teacher (``teacher.serve``: labmake starts the OpenAI-compatible server itself,
:mod:`labmake.teacher.served`) always runs under such a teacher process, which starts the
server command, waits until it answers and stops exactly it. With sharing on, that is the
allocation's one process, as above: one server for all its jobs. With sharing off, the job
starts a private one (its socket named with the job's pid, so no other job finds it) that stops
when the job closes the teacher, or within about a second of the job's death, SIGKILL included.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Completion, OnDone, Request, Teacher, TeacherError
from labmake.teacher.registry import PLUGINS_ENV, loads_model, open_teacher
from labmake.teacher.served import STOP_GRACE_S

log = logging.getLogger(__name__)

SHARE_ENV = "LABMAKE_TEACHER_SHARE"
IDLE_S = 120  # a shared teacher nobody used for this long stops (the next job starts another)
LOAD_TIMEOUT_S = 3600  # a 70B GGUF from a slow file system still loads well within an hour
# A Unix socket's path is limited to 107 bytes; a site's TMPDIR may be long.
MAX_SOCKET_PATH = 100
STOP_WAIT_S = STOP_GRACE_S + 10  # a private teacher process stopping its server


def sharing_on() -> bool:
    """Whether this process's jobs share one teacher process (see the module's docstring)."""
    choice = os.environ.get(SHARE_ENV, "auto").strip().lower()
    if choice in ("on", "1", "true", "yes"):
        return True
    if choice in ("off", "0", "false", "no"):
        return False
    return bool(os.environ.get("SLURM_JOB_ID"))


def open_for_job(cfg: TeacherConfig, key: str = "teacher") -> Teacher:
    """The teacher a job uses: the allocation's shared one, one loaded in this process, or --
    served (``teacher.serve``) with sharing off -- this job's own teacher process.

    Either way the job's log says where the model was loaded, so a build's model loads can be
    counted from its logs ("teacher: loaded ...")."""
    if cfg.serve is not None:
        if cfg.gguf is not None:  # the digest of where it runs: this GGUF, wherever from
            cfg = dataclasses.replace(cfg, gguf=str(Path(cfg.gguf).absolute()))
        return _connect(cfg, key, private=not sharing_on())
    if not (loads_model(cfg.backend) and sharing_on()):
        start = time.monotonic()
        teacher = open_teacher(cfg, key)
        if loads_model(cfg.backend):
            log.info(
                "teacher: loaded %s in %.1f s in this job's own process",
                teacher.identity,
                time.monotonic() - start,
            )
        return teacher
    return _connect(cfg, key)


class SharedTeacher:
    """A teacher answered by a teacher process: the allocation's shared one, or this job's own
    (``private``: it stops when this job closes the teacher; see the module)."""

    def __init__(
        self,
        conn: Connection,
        hello: dict[str, Any],
        log_path: Path,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self._conn = conn
        self._log_path = log_path
        self._process = process  # the teacher process, when this job started it
        self.private: bool = hello.get("private", False)
        self.server_pid: int | None = hello.get("server_pid")  # teacher.serve's command
        self.server_url: str | None = hello.get("server_url")
        self.identity: str = hello["identity"]
        self.n_ctx: int = hello["n_ctx"]
        self.sampling: dict[str, Any] = hello["sampling"]
        self.batch_size: int = hello["batch_size"]
        self.batch_invariant: bool = hello["batch_invariant"]
        self.where = f"pid {hello['pid']} on {hello['host']}"

    def _ask(self, *message: Any) -> Any:
        self._send(message)
        return self._answer()

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self._conn.send(message)
        except OSError as exc:
            raise self._gone(exc) from None

    def _answer(self) -> Any:
        try:
            reply = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._gone(exc) from None
        if reply[0] == "error":
            raise TeacherError(reply[1])
        return reply

    def _gone(self, exc: BaseException) -> TeacherError:
        return TeacherError(
            f"the teacher process ({self.where}) stopped answering "
            f"({type(exc).__name__}); its log is {self._log_path}; run the build again "
            f"(what was answered is cached)"
        )

    def count_tokens(self, text: str) -> int:
        return int(self._ask("count_tokens", text)[1])

    def complete(self, request: Request) -> Completion:
        completion: Completion = self._ask("complete", request)[1]
        return completion

    def complete_many(self, requests: Sequence[Request], on_done: OnDone) -> None:
        self._send(("complete_many", list(requests)))
        while (reply := self._answer())[0] == "done":
            on_done(reply[1], reply[2])

    def close(self) -> None:
        """Leave. A job's private teacher process then stops its server and exits: wait for
        that (its end closes the connection), so nothing of it outlives the job's teacher."""
        with suppress(OSError):
            self._conn.send(("stop",) if self.private else ("bye",))
        if self.private:
            with suppress(OSError, EOFError):
                if self._conn.poll(STOP_WAIT_S):
                    self._conn.recv()
        self._conn.close()
        if self.private and self._process is not None:
            with suppress(subprocess.TimeoutExpired):
                if self._process.wait(STOP_WAIT_S) == 0:  # a clean stop: its files go too
                    for suffix in (".log", ".lock"):
                        Path(str(self._log_path).removesuffix(".log") + suffix).unlink(
                            missing_ok=True
                        )


def share_folder() -> Path:
    """A folder only this user can enter (a socket and a key live there), refused otherwise."""
    uid = os.getuid()
    for base in (Path(tempfile.gettempdir()), Path("/tmp")):
        folder = base / f"labmake-teacher-{uid}"
        if len(str(folder)) + 40 <= MAX_SOCKET_PATH:
            break
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.lstat()
    if folder.is_symlink() or status.st_uid != uid or status.st_mode & 0o077:
        raise TeacherError(
            f"{folder}: the shared teacher's folder must be this user's own, mode 0700, not a "
            f"link; remove it, or set {SHARE_ENV}=off"
        )
    return folder


def _server_base(cfg: TeacherConfig, private: bool = False) -> Path:
    """Where the socket, key, config and log of the teacher process for ``cfg`` go: one per
    allocation (SLURM job) and per teacher configuration and interpreter; ``private``: one per
    job process, which no other job looks for."""
    config = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    digest = hashlib.sha256(
        f"{sys.executable}\n{os.environ.get(PLUGINS_ENV, '')}\n{config}".encode()
    ).hexdigest()[:16]
    scope = f"pid{os.getpid()}" if private else os.environ.get("SLURM_JOB_ID", "local")
    return share_folder() / f"{scope}-{digest}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _connect(cfg: TeacherConfig, key: str, private: bool = False) -> SharedTeacher:
    base = _server_base(cfg, private)
    log_path = Path(f"{base}.log")
    for attempt in (1, 2):
        process = None
        with _locked(Path(f"{base}.lock")):
            conn = _try_connect(base)
            if conn is None:
                conn, process = _start(base, cfg, key, log_path, private)
        try:
            hello = conn.recv()
        except (EOFError, OSError):
            # It was stopping (idle) as this job connected: start another, once.
            if attempt == 2:
                raise TeacherError(
                    f"the shared teacher process closed the connection at once; its log is "
                    f"{log_path}; run the build again, or set {SHARE_ENV}=off"
                ) from None
            continue
        teacher = SharedTeacher(conn, hello, log_path, process)
        _log_load(teacher, hello)
        return teacher
    raise AssertionError("unreachable")


def _log_load(teacher: SharedTeacher, hello: dict[str, Any]) -> None:
    """The job's "teacher: loaded" line (counted per build: benchmarks/overhead.py)."""
    served = (
        f", its server pid {teacher.server_pid} at {teacher.server_url}"
        if teacher.server_pid
        else ""
    )
    if hello["client"] == 1 and teacher.private:
        log.info(
            "teacher: loaded %s in %.1f s in this job's own teacher process (%s%s), which "
            "stops with this job",
            teacher.identity,
            hello["loaded_s"],
            teacher.where,
            served,
        )
    elif hello["client"] == 1:
        log.info(
            "teacher: loaded %s in %.1f s in a shared teacher process (%s%s), started by "
            "this job; the allocation's later teacher jobs use it",
            teacher.identity,
            hello["loaded_s"],
            teacher.where,
            served,
        )
    else:
        log.info(
            "teacher: using the %s teacher process (%s%s), job %d to use it, which "
            "loaded %s %.0f s ago: no load in this job",
            "job's own" if teacher.private else "shared",
            teacher.where,
            served,
            hello["client"],
            teacher.identity,
            hello["uptime_s"],
        )


def _try_connect(base: Path, *, remove_stale: bool = True) -> Connection | None:
    """A connection to a live teacher process at ``base``, or None (with ``remove_stale``, the
    socket a dead process left behind is removed)."""
    sock, key_file = Path(f"{base}.sock"), Path(f"{base}.key")
    if not sock.exists() or not key_file.exists():
        return None
    try:
        return Client(str(sock), family="AF_UNIX", authkey=key_file.read_bytes())
    except (ConnectionRefusedError, FileNotFoundError, EOFError):
        if remove_stale:
            sock.unlink(missing_ok=True)
        return None
    except AuthenticationError:
        raise TeacherError(
            f"{sock}: the shared teacher process there did not accept this job's key; remove "
            f"{sock.parent}, or set {SHARE_ENV}=off"
        ) from None


def _start(
    base: Path, cfg: TeacherConfig, key: str, log_path: Path, private: bool
) -> tuple[Connection, subprocess.Popen[bytes]]:
    """Start the teacher process for ``cfg`` and wait until it answers (it loads the model or
    starts the served one); ``private``: it serves this job alone and stops with it."""
    sock, key_file, config_file = (Path(f"{base}{s}") for s in (".sock", ".key", ".json"))
    sock.unlink(missing_ok=True)
    for path, data in ((key_file, secrets.token_bytes(32)), (config_file, None)):
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data or json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    command = [
        sys.executable,
        "-m",
        "labmake.teacher.shared_server",
        *("--socket", str(sock), "--key-file", str(key_file), "--config", str(config_file)),
        *("--section", key, "--idle", str(IDLE_S), "--log", str(log_path)),
        *("--load-timeout", str(LOAD_TIMEOUT_S)),
        *(("--owner-pid", str(os.getpid())) if private else ()),
    ]
    with open(log_path, "ab") as out:
        offset = os.fstat(out.fileno()).st_size
        # Its own session: a signal to this job's process group leaves the allocation's teacher
        # to the jobs that come after (a private one watches this job instead).
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    log.info(
        "teacher: starting %s teacher process (pid %d on %s)%s; its log is %s",
        "this job's own" if private else "a shared",
        process.pid,
        socket.gethostname(),
        f", which starts `{shlex.join(cfg.serve)}`" if cfg.serve else ", loading the model",
        log_path,
    )
    # Its own deadline for the server (LOAD_TIMEOUT_S) comes first: its message is the better.
    deadline = time.monotonic() + LOAD_TIMEOUT_S + STOP_WAIT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TeacherError(
                f"the teacher process exited ({process.returncode}) before it answered: "
                f"{_why_it_exited(log_path, offset)} (its log: {log_path})"
            )
        conn = _try_connect(base, remove_stale=False)  # it may be binding this moment
        if conn is not None:
            return conn, process
        time.sleep(0.2)
    process.terminate()  # it stops what it started
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_WAIT_S)
    process.kill()
    raise TeacherError(
        f"the teacher process did not answer within {LOAD_TIMEOUT_S + STOP_WAIT_S:g} s; its "
        f"log is {log_path}"
    )


def _why_it_exited(log_path: Path, offset: int) -> str:
    """The teacher process's last error (and the line ending its traceback, if any), else the
    last lines it wrote: of this start only (the log is appended to)."""
    with open(log_path, "rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").strip().splitlines()
    errors = [i for i, line in enumerate(lines) if " ERROR labmake." in line and ": " in line]
    if not errors:
        return " | ".join(lines[-5:])
    message = lines[errors[-1]].split(": ", 1)[1]
    return message if errors[-1] == len(lines) - 1 else f"{message} | {lines[-1]}"
