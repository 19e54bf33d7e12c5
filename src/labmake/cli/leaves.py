"""Which leaves a command is about: named on the command line, or what ``labmake diff`` reports.

A leaf may be named as the taxonomy has it (``compositional_skills/writing/freeform/haiku``), by
its folder or its qna.yaml (``taxonomy/.../haiku/qna.yaml``), so a path pasted from a shell or an
editor works as well as the name.
"""

from __future__ import annotations

import contextlib
from pathlib import Path, PurePosixPath

from labmake.cli.changes import ADDED, CHANGED, LeafChange
from labmake.cli.diff import DiffError, find_changes
from labmake.taxonomy.findings import TaxonomyError
from labmake.taxonomy.scan import QNA, TOP_FOLDERS, find_leaves


class LeafError(ValueError):
    """A leaf named on the command line is not a leaf of the taxonomy; the message says why."""


def leaf_name(arg: str, root: Path) -> str:
    """The taxonomy-relative name of the leaf ``arg`` names (see the module's text)."""
    path = Path(arg)
    if path.name == QNA:
        path = path.parent
    candidates = [PurePosixPath(path.as_posix())]
    if path.exists():
        with contextlib.suppress(ValueError):  # a path outside the taxonomy: by name then
            candidates.insert(0, PurePosixPath(path.resolve().relative_to(root.resolve())))
    for candidate in candidates:
        name = candidate.as_posix().strip("/")
        if (root / name / QNA).is_file():
            return name
    name = from_top_folder(arg)  # a path from elsewhere: the taxonomy's own part of it
    if name and (root / name / QNA).is_file():
        return name
    raise LeafError(
        f"{arg}: not a leaf of the taxonomy {root} (a folder holding a {QNA}); name it as "
        f"`labmake diff` prints it, e.g. compositional_skills/writing/freeform/haiku"
    )


def from_top_folder(arg: str) -> str:
    """The part of a path from its first taxonomy branch on (``knowledge/...``), or ""."""
    parts = PurePosixPath(Path(arg).as_posix()).parts
    parts = parts[:-1] if parts and parts[-1] == QNA else parts
    top = next((i for i, part in enumerate(parts) if part in TOP_FOLDERS), None)
    return "/".join(parts[top:]) if top is not None else ""


def named_leaves(args: list[str], root: Path) -> list[str]:
    """The leaves named, each once, in the order given."""
    return list(dict.fromkeys(leaf_name(arg, root) for arg in args))


def changed_leaves(root: Path, base: str | None, build_dir: Path) -> tuple[str, list[LeafChange]]:
    """(what was compared with, the leaves ``labmake diff`` reports as added or changed).

    Raises :class:`LeafError` with diff's message when no comparison can be made.
    """
    try:
        label, _commit, changes, _note = find_changes(root, base, build_dir)
    except (DiffError, TaxonomyError) as exc:
        raise LeafError(str(exc)) from None
    current = set(find_leaves(root))
    picked = [c for c in changes if c.status in (ADDED, CHANGED) and c.leaf in current]
    return label, picked
