"""The teacher process: one model load, answering every teacher job of an allocation.

Started by :mod:`labmake.teacher.shared` (never by hand)::

    python -m labmake.teacher.shared_server --socket S --key-file K --config C --section teacher \
        [--log L] [--owner-pid PID] [--idle S] [--load-timeout S]

It opens the configured backend in this process -- or, with ``teacher.serve``, starts that server
command and opens the openai client of it (:mod:`labmake.teacher.served`) -- then listens on the
Unix socket ``S``; a client must prove it holds the key in ``K`` before anything is read from it
(the connection's messages are pickles, which only a trusted peer may send). Each connection is
served by its own thread; requests go to the backend one call at a time, so two jobs that share
the process get the answers they would get alone. With no connection for ``--idle`` seconds it
exits.

With ``--owner-pid`` it is one job's own teacher process (sharing off, a served teacher): it
stops as soon as that job's last connection ends (the job closed the teacher, or died) and when
the job's process is gone (checked every second, also while the server loads), so a killed job
leaves no server behind for more than about a second.

Every way out -- idle, the owner gone, its last connection ended, SIGTERM/SIGINT/SIGHUP, a failed
start -- goes through :meth:`Lifecycle.shutdown`: the socket is removed first and the server
command stopped. Only SIGKILL skips that; the kernel's parent-death signal then stops the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any, NoReturn

from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Batching, Teacher, TeacherError, complete_one_by_one
from labmake.teacher.registry import open_teacher
from labmake.teacher.served import LOG_FORMAT, ServedProcess, open_served

log = logging.getLogger("labmake.teacher.shared_server")
OWNER_POLL_S = 1.0


class Lifecycle:
    """How this process ends, whichever thread or signal ends it: never with a server left."""

    def __init__(self, sock: Path, own_files: tuple[Path, ...] = ()) -> None:
        self.sock = sock
        self.own_files = own_files  # a job's own process removes its key and config too
        self.served: ServedProcess | None = None
        self._lock = threading.RLock()  # re-entrant: a signal may arrive during a shutdown

    def shutdown(self, why: str, code: int = 0) -> NoReturn:
        with self._lock:  # a second caller waits here until the first ends the process
            self.sock.unlink(missing_ok=True)  # first: no new job finds it
            for path in self.own_files:
                path.unlink(missing_ok=True)
            if code == 0:
                log.info("stopping: %s", why)
            if self.served is not None:
                self.served.stop()
                if code == 0:
                    log.info("stopped the server command (pid %d)", self.served.pid)
            logging.shutdown()
            os._exit(code)

    def on_signals(self) -> None:
        def stop(signum: int, _frame: Any) -> None:
            self.shutdown(f"{signal.Signals(signum).name} received")

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc, or None (no /proc, or no such process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def watch_owner(pid: int, life: Lifecycle) -> None:
    """Shut down once the job ``pid`` is gone: exited, a zombie, or its pid reused (a thread)."""
    born = _proc_stat(pid)
    while True:
        now = _proc_stat(pid)
        if born is not None:
            alive = now is not None and now[0] not in "ZX" and now[1] == born[1]
        else:  # no /proc here
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except PermissionError:
                alive = True
        if not alive:
            life.shutdown(f"the job that owns this teacher (pid {pid}) is gone")
        time.sleep(OWNER_POLL_S)


class Server:
    """The backend, who is connected, and when it was last used."""

    def __init__(
        self, teacher: Teacher, loaded_s: float, idle_s: float, life: Lifecycle, private: bool
    ) -> None:
        self.teacher = teacher
        self.life = life
        self.private = private  # one job's own: it stops when that job's last connection ends
        self.loaded_s = loaded_s
        self.idle_s = idle_s
        self.started = time.monotonic()
        self.clients = 0
        self.active = 0
        self.last_used = time.monotonic()
        self.state = threading.Lock()  # clients, active, last_used
        self.backend = threading.Lock()  # one backend call at a time

    def hello(self) -> dict[str, Any]:
        with self.state:
            self.clients += 1
            self.active += 1
            client = self.clients
        t, traits = self.teacher, Batching.of(self.teacher)
        return {
            "identity": t.identity,
            "n_ctx": t.n_ctx,
            "sampling": traits.sampling,
            "batch_size": traits.batch_size,
            "batch_invariant": traits.batch_invariant,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "loaded_s": round(self.loaded_s, 1),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "client": client,
            "private": self.private,
            "server_pid": self.life.served.pid if self.life.served else None,
            "server_url": self.life.served.base_url if self.life.served else None,
        }

    def serve(self, conn: Connection) -> None:
        """One job's connection, until it says bye (or stop: it is done) or goes away."""
        why = "the job's connection ended"
        try:
            conn.send(self.hello())
            while (message := conn.recv())[0] not in ("bye", "stop"):
                with self.backend:
                    self._answer(conn, message)
            why = "the job closed its teacher"
        except (EOFError, OSError):
            pass  # the job ended (or was killed): its answers so far are in its cache
        finally:
            with self.state:
                self.active -= 1
                self.last_used = time.monotonic()
                if self.private and self.active == 0:
                    # The job's close() waits for this process to end: the server is gone then.
                    self.life.shutdown(why)
            conn.close()

    def _answer(self, conn: Connection, message: tuple[Any, ...]) -> None:
        kind = message[0]
        try:
            if kind == "count_tokens":
                conn.send(("ok", self.teacher.count_tokens(message[1])))
            elif kind == "complete":
                conn.send(("ok", self.teacher.complete(message[1])))
            elif kind == "complete_many":
                many = getattr(self.teacher, "complete_many", None)
                send = lambda i, completion: conn.send(("done", i, completion))  # noqa: E731
                if many is None:
                    complete_one_by_one(self.teacher, message[1], send)
                else:
                    many(message[1], send)
                conn.send(("end",))
            else:
                conn.send(("error", f"the shared teacher has no request {kind!r}"))
        except TeacherError as exc:
            conn.send(("error", str(exc)))
        except (EOFError, OSError):
            raise
        except Exception as exc:  # a backend's bug: tell the job, keep serving the others
            log.exception("teacher request failed")
            conn.send(("error", f"the shared teacher failed: {type(exc).__name__}: {exc}"))

    def stop_when_idle(self) -> None:
        """Exit once no job has been connected for idle_s seconds (a thread's loop)."""
        while True:
            time.sleep(min(1.0, self.idle_s / 4))
            with self.state:
                if self.active == 0 and time.monotonic() - self.last_used > self.idle_s:
                    self.life.shutdown(f"no job for {self.idle_s:.0f} s ({self.clients} served)")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="labmake.teacher.shared_server")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--section", default="teacher")
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--log", type=Path, default=None, help="where this process's output goes")
    parser.add_argument("--owner-pid", type=int, default=None, help="the one job it serves")
    parser.add_argument("--load-timeout", type=float, default=3600.0)
    return parser.parse_args(argv)


def _config(path: Path) -> TeacherConfig:
    data = json.loads(path.read_text())
    return TeacherConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _open(cfg: TeacherConfig, args: argparse.Namespace, life: Lifecycle) -> Teacher:
    """The backend (loaded here) or the served teacher (started here); the owner watched."""

    def watch() -> None:
        if args.owner_pid is not None:
            threading.Thread(target=watch_owner, args=(args.owner_pid, life), daemon=True).start()

    if cfg.serve is None:
        watch()
        return open_teacher(cfg, args.section)

    def started(process: ServedProcess) -> None:
        life.served = process
        log.info(
            "teacher.serve: started `%s` (pid %d, its own process group)",
            process.shown,
            process.pid,
        )
        watch()  # only now: no thread may run while the command is forked

    return open_served(cfg, args.log, args.load_timeout, started)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    own = (args.key_file, args.config) if args.owner_pid is not None else ()
    life = Lifecycle(args.socket, own)
    life.on_signals()
    try:
        _run(args, life)
    except TeacherError as exc:
        log.error("%s", exc)
    except Exception:
        log.exception("the teacher process failed")
    life.shutdown("it failed", 1)


def _run(args: argparse.Namespace, life: Lifecycle) -> None:
    key = args.key_file.read_bytes()
    cfg = _config(args.config)
    start = time.monotonic()
    teacher = _open(cfg, args, life)
    loaded_s = time.monotonic() - start
    log.info("loaded %s in %.1f s (pid %d)", teacher.identity, loaded_s, os.getpid())
    server = Server(teacher, loaded_s, args.idle, life, private=args.owner_pid is not None)
    listener = Listener(str(args.socket), family="AF_UNIX", authkey=key)
    threading.Thread(target=server.stop_when_idle, daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (AuthenticationError, EOFError, OSError) as exc:
            log.warning("refused a connection: %s", exc)
            continue
        threading.Thread(target=server.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
