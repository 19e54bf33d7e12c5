"""Stable hashes, and the seeds derived from them: the same parts give the same number on every
machine and every run (no Python ``hash()``, which is salted per process)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (global seed, leaf, index, ...)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def prompt_sha256(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def params_hash(params: dict[str, Any]) -> str:
    """The hash of a config mapping, independent of key order."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
