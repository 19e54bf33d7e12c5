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
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import secrets
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

log = logging.getLogger(__name__)

SHARE_ENV = "LABMAKE_TEACHER_SHARE"
IDLE_S = 120  # a shared teacher nobody used for this long stops (the next job starts another)
LOAD_TIMEOUT_S = 3600  # a 70B GGUF from a slow file system still loads well within an hour
# A Unix socket's path is limited to 107 bytes; a site's TMPDIR may be long.
MAX_SOCKET_PATH = 100


def sharing_on() -> bool:
    """Whether this process's jobs share one teacher process (see the module's docstring)."""
    choice = os.environ.get(SHARE_ENV, "auto").strip().lower()
    if choice in ("on", "1", "true", "yes"):
        return True
    if choice in ("off", "0", "false", "no"):
        return False
    return bool(os.environ.get("SLURM_JOB_ID"))


def open_for_job(cfg: TeacherConfig, key: str = "teacher") -> Teacher:
    """The teacher a job uses: the allocation's shared one, or one loaded in this process.

    Either way the job's log says where the model was loaded, so a build's model loads can be
    counted from its logs ("teacher: loaded ...")."""
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
    """A teacher answered by the allocation's shared teacher process (see the module)."""

    def __init__(self, conn: Connection, hello: dict[str, Any], log_path: Path) -> None:
        self._conn = conn
        self._log_path = log_path
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
            f"the shared teacher process ({self.where}) stopped answering "
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
        with suppress(OSError):
            self._conn.send(("bye",))
        self._conn.close()


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


def _server_base(cfg: TeacherConfig) -> Path:
    """Where the socket, key, config and log of the teacher process for ``cfg`` go: one per
    allocation (SLURM job) and per teacher configuration and interpreter."""
    config = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    digest = hashlib.sha256(
        f"{sys.executable}\n{os.environ.get(PLUGINS_ENV, '')}\n{config}".encode()
    ).hexdigest()[:16]
    scope = os.environ.get("SLURM_JOB_ID", "local")
    return share_folder() / f"{scope}-{digest}"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _connect(cfg: TeacherConfig, key: str) -> SharedTeacher:
    base = _server_base(cfg)
    log_path = Path(f"{base}.log")
    for attempt in (1, 2):
        with _locked(Path(f"{base}.lock")):
            conn = _try_connect(base)
            if conn is None:
                conn = _start(base, cfg, key, log_path)
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
        teacher = SharedTeacher(conn, hello, log_path)
        if hello["client"] == 1:
            log.info(
                "teacher: loaded %s in %.1f s in a shared teacher process (%s), started by "
                "this job; the allocation's later teacher jobs use it",
                teacher.identity,
                hello["loaded_s"],
                teacher.where,
            )
        else:
            log.info(
                "teacher: using the shared teacher process (%s), job %d to use it, which "
                "loaded %s %.0f s ago: no load in this job",
                teacher.where,
                hello["client"],
                teacher.identity,
                hello["uptime_s"],
            )
        return teacher
    raise AssertionError("unreachable")


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


def _start(base: Path, cfg: TeacherConfig, key: str, log_path: Path) -> Connection:
    """Start the teacher process for ``cfg`` and wait until it answers (it loads the model)."""
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
        *("--section", key, "--idle", str(IDLE_S)),
    ]
    with open(log_path, "ab") as out:
        # Its own session: a signal to this job's process group leaves the allocation's teacher
        # to the jobs that come after.
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    log.info(
        "teacher: starting a shared teacher process (pid %d on %s), loading the model; "
        "its log is %s",
        process.pid,
        socket.gethostname(),
        log_path,
    )
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise TeacherError(
                f"the shared teacher process exited ({process.returncode}) before it answered: "
                + " | ".join(tail)
            )
        conn = _try_connect(base, remove_stale=False)  # it may be binding this moment
        if conn is not None:
            return conn
        time.sleep(0.2)
    process.kill()
    raise TeacherError(
        f"the shared teacher process did not answer within {LOAD_TIMEOUT_S} s; its log is "
        f"{log_path}"
    )
