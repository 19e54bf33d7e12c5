"""What a check reports: an :class:`Issue` about a place in the data, then a :class:`Finding`.

Checks (schema, limits, documents) speak in data paths such as ``("seed_examples", 3,
"answer")``; :mod:`labmake.taxonomy` turns each Issue into a Finding by adding the file and
the line/column that the path has in the YAML text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem in one file, with where it is and what to do about it."""

    path: str  # the file, as the user named it (root / leaf / qna.yaml)
    line: int | None
    col: int | None
    yaml_path: str | None  # seed_examples[3].answer
    level: str  # 'error' | 'warning'
    message: str
    hint: str
    source: str  # 'yaml' | 'yamllint' | 'schema' | 'limits' | 'security' | 'documents'

    def sort_key(self) -> tuple[str, int, int, str, str]:
        return (self.path, self.line or 0, self.col or 0, self.level, self.message)


@dataclass(frozen=True)
class Issue:
    """A finding before it knows its file and position."""

    data_path: tuple[Any, ...]
    message: str
    hint: str
    source: str
    level: str = ERROR
    at_key: bool = False  # point at the key itself (unknown keys) rather than its value


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def yaml_path(path: Sequence[Any]) -> str:
    """``("seed_examples", 3, "answer")`` -> ``seed_examples[3].answer``; ``()`` -> ``.``"""
    out = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out or "."
