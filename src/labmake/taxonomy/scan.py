"""Finding the leaves of a taxonomy: every folder that holds a ``qna.yaml``.

A leaf is the taxonomy-relative folder of its file (``knowledge/science/water_cycle``). The
walk never leaves the taxonomy: a symlink that leads outside it is an error, and a symlinked
folder is not followed (its leaves count once, under their real path, as git stores them).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from labmake.taxonomy.findings import (
    ERROR,
    WARNING,
    Finding,
    TaxonomyError,
    describe_findings,
    path_finding,
)
from labmake.taxonomy.leaf_names import leaf_name_problem
from labmake.taxonomy.schema import KIND_FOLDERS, KNOWLEDGE, kind_for

QNA = "qna.yaml"
TOP_FOLDERS = ("knowledge", "compositional_skills", "foundational_skills")
# Never searched for leaves, even by `labmake validate`: tool state, not taxonomy.
TOOL_FOLDERS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".dvc",
        ".snakemake",
        ".venv",
        ".tox",
        ".cache",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        "__pycache__",
        "node_modules",
    }
)
# Names a person may give the file by mistake; each is reported rather than silently skipped.
_NEAR_MISSES = ("qna.yml", "qna.yaml", "qna.yaml.txt")


def find_leaves(root: Path) -> list[str]:
    """Sorted taxonomy-relative folders holding a qna.yaml; hidden folders are skipped.

    A qna.yaml directly in the root belongs to no branch and is not a leaf (``labmake
    validate`` still checks it). Raises :class:`TaxonomyError` if the root is not a folder or
    a symlink in the tree leads outside it.
    """
    root = Path(root)
    if not root.is_dir():
        raise TaxonomyError(
            f"{root}: taxonomy root is not a folder; set taxonomy.root in "
            "params.yaml to the folder holding knowledge/ and compositional_skills/"
        )
    leaves, problems = scan(root, hidden=False)
    errors = [f for f in problems if f.level == ERROR]
    for leaf in leaves:
        named = leaf_name_problem(leaf) if leaf != "." else None
        if named is not None:  # Snakemake would fail on it later, in its own words
            errors.append(path_finding(root / leaf / QNA, *named, "security", ERROR))
    if errors:
        raise TaxonomyError(describe_findings(errors))
    return [leaf for leaf in leaves if leaf != "."]


def scan(root: Path, *, hidden: bool) -> tuple[list[str], list[Finding]]:
    """Every folder with a qna.yaml (the root as "."), and problems met on the way.

    The build skips hidden folders; ``labmake validate`` (``hidden``) still checks the leaves
    in them, as InstructLab would, and warns that the build will not see them.
    """
    root_real = root.resolve()
    leaves: list[str] = []
    problems: list[Finding] = []
    stack: list[tuple[Path, tuple[str, ...]]] = [(root, ())]
    while stack:
        folder, rel = stack.pop()
        for entry in _entries(folder, problems):
            if entry.name in TOOL_FOLDERS or (entry.name.startswith(".") and not hidden):
                continue
            path = Path(entry.path)
            if entry.is_symlink():
                problem = _symlink_problem(path, root_real)
                if problem is not None:
                    problems.append(problem)
                    continue
            if entry.name == QNA and entry.is_dir(follow_symlinks=False):
                problems.append(
                    path_finding(
                        path,
                        "qna.yaml is a folder, not a file: this leaf is not read",
                        "make qna.yaml a file (move what the folder holds elsewhere)",
                        "yaml",
                        ERROR,
                    )
                )
            elif entry.is_dir(follow_symlinks=False):
                stack.append((path, rel + (entry.name,)))
            elif entry.name == QNA:
                leaves.append("/".join(rel) or ".")
            elif entry.name.lower() in _NEAR_MISSES:
                problems.append(
                    path_finding(
                        path,
                        f"{entry.name} is not read: a leaf's file must be named exactly qna.yaml",
                        f"rename it to {QNA}",
                        "yaml",
                        WARNING,
                    )
                )
    return sorted(leaves), problems


def _entries(folder: Path, problems: list[Finding]) -> list[os.DirEntry[str]]:
    """The folder's entries by name; a folder that cannot be listed is a problem, not a crash."""
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        problems.append(
            path_finding(
                folder,
                f"cannot list this folder: {exc.strerror}",
                "check its permissions",
                "security",
                ERROR,
            )
        )
        return []


def _symlink_problem(path: Path, root_real: Path) -> Finding | None:
    """Why a symlink is not walked, or None for a link to a file inside the taxonomy."""
    target = path.resolve()
    if not target.is_relative_to(root_real):
        return path_finding(
            path,
            "symlink leads outside the taxonomy",
            "a taxonomy must be self-contained: replace the link with a copy of the file or folder",
            "security",
            ERROR,
        )
    if target.is_dir():
        # Like git, which stores a link and not the folder behind it: the leaves there are
        # found under their real path, once, with no loops.
        return path_finding(
            path,
            "symlinked folder is not followed; its leaves count under their real path",
            "nothing to do if the target is in the taxonomy anyway; otherwise "
            "move the folder here instead of linking it",
            "yaml",
            WARNING,
        )
    return None


def knowledge_leaves(root: Path, leaves: Sequence[str]) -> list[str]:
    """The knowledge leaves among ``leaves`` (by folder, else by a ``document`` key).

    A leaf under a kind folder is decided without reading its file; elsewhere a qna.yaml that
    does not parse counts as no knowledge leaf here. Either way the seeds rule reports it.
    """
    out = []
    for leaf in leaves:
        parts = Path(leaf).parts
        if any(part in KIND_FOLDERS for part in parts):
            # The folder decides: no need to read the file (thousands of leaves are parsed
            # each time Snakemake reads the workflow).
            data = None
        else:
            try:
                data = yaml.safe_load((Path(root) / leaf / QNA).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
        if kind_for(parts, data) == KNOWLEDGE:
            out.append(leaf)
    return out
