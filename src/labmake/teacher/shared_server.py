"""The shared teacher process: one model load, answering every teacher job of an allocation.

Started by :mod:`labmake.teacher.shared` (never by hand)::

    python -m labmake.teacher.shared_server --socket S --key-file K --config C --section teacher

It opens the configured backend in this process, then listens on the Unix socket ``S``; a
client must prove it holds the key in ``K`` before anything is read from it (the connection's
messages are pickles, which only a trusted peer may send). Each connection is served by its own
thread; requests go to the backend one call at a time, so two jobs that share the process get
the answers they would get alone. With no connection for ``--idle`` seconds it removes its
socket and exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Teacher, TeacherError, complete_one_by_one
from labmake.teacher.registry import open_teacher

log = logging.getLogger("labmake.teacher.shared_server")


class Server:
    """The backend, who is connected, and when it was last used."""

    def __init__(self, teacher: Teacher, loaded_s: float, idle_s: float) -> None:
        self.teacher = teacher
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
        t = self.teacher
        return {
            "identity": t.identity,
            "n_ctx": t.n_ctx,
            "sampling": dict(getattr(t, "sampling", {})),
            "batch_size": max(1, int(getattr(t, "batch_size", 1))),
            "batch_invariant": bool(getattr(t, "batch_invariant", True)),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "loaded_s": round(self.loaded_s, 1),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "client": client,
        }

    def serve(self, conn: Connection) -> None:
        """One job's connection, until it says bye or goes away."""
        try:
            conn.send(self.hello())
            while (message := conn.recv())[0] != "bye":
                with self.backend:
                    self._answer(conn, message)
        except (EOFError, OSError):
            pass  # the job ended (or was killed): its answers so far are in its cache
        finally:
            conn.close()
            with self.state:
                self.active -= 1
                self.last_used = time.monotonic()

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

    def stop_when_idle(self, sock: Path) -> None:
        """Exit once no job has been connected for idle_s seconds (a thread's loop)."""
        while True:
            time.sleep(min(1.0, self.idle_s / 4))
            with self.state:
                if self.active == 0 and time.monotonic() - self.last_used > self.idle_s:
                    sock.unlink(missing_ok=True)  # before exiting: no new job finds it
                    log.info(
                        "no job for %.0f s: stopping (%d jobs served)", self.idle_s, self.clients
                    )
                    logging.shutdown()
                    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labmake.teacher.shared_server")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--section", default="teacher")
    parser.add_argument("--idle", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    key = args.key_file.read_bytes()
    cfg = TeacherConfig(**json.loads(args.config.read_text()))
    start = time.monotonic()
    try:
        teacher = open_teacher(cfg, args.section)
    except TeacherError as exc:
        log.error("%s", exc)
        return 1
    loaded_s = time.monotonic() - start
    log.info("loaded %s in %.1f s (pid %d)", teacher.identity, loaded_s, os.getpid())
    server = Server(teacher, loaded_s, args.idle)
    listener = Listener(str(args.socket), family="AF_UNIX", authkey=key)
    threading.Thread(target=server.stop_when_idle, args=(args.socket,), daemon=True).start()
    while True:
        try:
            conn = listener.accept()
        except (AuthenticationError, EOFError, OSError) as exc:
            log.warning("refused a connection: %s", exc)
            continue
        threading.Thread(target=server.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
