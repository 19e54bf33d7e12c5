"""What a check reports: an :class:`Issue` about a place in the data, then a :class:`Finding`.

Checks (schema, limits, documents) speak in data paths such as ``("seed_examples", 3,
"answer")``; :mod:`labmake.taxonomy.check` turns each Issue into a Finding by adding the file
and the line/column that the path has in the YAML text. Errors that stop a build travel as a
:class:`TaxonomyError` whose message lists them, one file position and fix each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
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


class TaxonomyError(ValueError):
    """A taxonomy or leaf cannot be used; the message names the file and the fix."""


def path_finding(path: Path, message: str, hint: str, source: str, level: str) -> Finding:
    """A finding about a whole file or folder (no line, no data path)."""
    return Finding(printable(str(path)), None, None, None, level, message, hint, source)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``), so that a
    file or folder name cannot break a line of output or steer the terminal."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def describe_findings(findings: Sequence[Finding]) -> str:
    """The findings as the text of a :class:`TaxonomyError`: position, level, message, fix."""
    return "\n".join(_one_line(f) for f in findings)


def _one_line(f: Finding) -> str:
    where = f.path + (f":{f.line}:{f.col}" if f.line else "")
    at = f" [{f.yaml_path}]" if f.yaml_path and f.yaml_path != "." else ""
    return f"{where}: {f.level}{at}: {f.message}\n    fix: {indent(f.hint, 9)}"


def indent(text: str, n: int) -> str:
    """``text`` with its continuation lines indented by ``n`` spaces, under a label."""
    return text.replace("\n", "\n" + " " * n)


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
