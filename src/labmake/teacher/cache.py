"""A request-level cache of teacher completions, so a crashed or re-run build re-asks nothing.

One small JSON file per finished request, named by the sha256 of everything that decides the
answer: the teacher's identity (backend, model bytes or URL, model name), the sampling
parameters, the rendered prompt, the seed, max_tokens and the stop strings. Each file is written
atomically the moment its completion arrives, so a ``kill -9`` loses at most the requests in
flight, and a reader never sees half an entry. Entries never go stale: a changed input is a new
key. Deleting the directory is always safe (it only costs teacher time).

An entry is read back as untrusted: one whose fields have the wrong types (``"text": 12345``)
is a miss, re-asked, with a warning, never an answer. A cache that cannot be written (a
read-only folder, a full disk) stops the stage with one message saying so, not a traceback.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.teacher.protocol import TeacherError

log = logging.getLogger(__name__)

# Bump when the key's recipe or the entry's layout changes: old entries then simply miss.
FORMAT = 1
# What each field of an entry must be (bool is not an int here: `seed: true` is damage).
_FIELDS: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "finished": (bool,),
    "teacher": (str,),
    "prompt_sha256": (str,),
    "seed": (int,),
}
_OPTIONAL = {"completion_tokens": (int,)}


class CacheError(TeacherError):
    """The request cache cannot be written; the message names the folder and the fix."""


def request_key(
    identity: str,
    sampling: Mapping[str, Any],
    prompt: str,
    seed: int,
    max_tokens: int,
    stop: tuple[str, ...],
) -> str:
    """The sha256 naming one request's answer."""
    material = {
        "format": FORMAT,
        "teacher": identity,
        "sampling": dict(sorted(sampling.items())),
        "prompt": prompt,
        "seed": seed,
        "max_tokens": max_tokens,
        "stop": list(stop),
    }
    encoded = json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


class RequestCache:
    """Finished completions on disk, one file per request key (``ab/abcdef....json``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.stores = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Entries are written atomically, so this is outside damage: treat it as a miss
            # and let the fresh answer overwrite it.
            log.warning("%s: unreadable teacher cache entry, asking the teacher again", path)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key:
            log.warning("%s: teacher cache entry does not match its name, ignoring it", path)
            return None
        wrong = _wrong_fields(entry)
        if wrong:
            log.warning(
                "%s: teacher cache entry has %s of the wrong type, asking the teacher again",
                path,
                ", ".join(wrong),
            )
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        path = self._path(key)
        try:
            artifacts.write_text_atomic(path, artifacts.dumps({**entry, "key": key}) + "\n")
        except OSError as exc:
            raise CacheError(
                f"{self.directory}: cannot store a teacher answer in the request cache "
                f"({exc.strerror or exc}); make the folder writable or free disk space "
                "(deleting the folder is safe: it only costs teacher time). Answers stored "
                "so far are kept; re-run to resume."
            ) from None
        self.stores += 1

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("??/*.json")) if self.directory.is_dir() else 0


def _wrong_fields(entry: Mapping[str, Any]) -> list[str]:
    """The fields of a cache entry that are missing or not of their type."""
    wrong = []
    for name, types in [*_FIELDS.items(), *_OPTIONAL.items()]:
        if name not in entry and name in _OPTIONAL:
            continue
        value = entry.get(name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            wrong.append(name)
    return wrong
