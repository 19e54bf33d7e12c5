"""Atomic, deterministic artifact I/O: JSON with sorted keys, written to a temp file and renamed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """labmake's caches (converted models, git documents): ``$LABMAKE_CACHE`` if set, else
    ``~/.cache/labmake``. Nothing in it is an artifact: each entry is keyed by content."""
    env = os.environ.get("LABMAKE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "labmake"


def _umask_mode(full: int) -> int:
    """``full`` (0o666 files, 0o777 folders) less the process umask: what open() would give.
    mkstemp/mkdtemp create private (0o600/0o700) entries, which would leave artifacts unreadable
    to the rest of a team sharing a build folder."""
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` so that ``path`` holds either the old content or all of the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode(0o666))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    write_text_atomic(path, "".join(dumps(r) + "\n" for r in records))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | Path) -> list[Any]:
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[Any]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; when the block succeeds it replaces ``target``.

    A reader sees the old folder or the whole new one, never a half-written one; on failure the
    temp folder is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, _umask_mode(0o777))
    try:
        yield tmp
        if target.exists():
            # A folder cannot be renamed over a non-empty one: move the old one aside first.
            old = tmp.with_suffix(".old")
            os.replace(target, old)
            shutil.rmtree(old)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
