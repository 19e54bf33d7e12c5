"""The labmake files a rule runs, derived from imports: a rule's code inputs never drift.

A rule's script imports labmake's stage function; the files that can run under it are the
static import closure of that script -- every ``import``/``from ... import`` of a labmake
module, at any depth, including imports inside functions (they run too) -- plus the data files
(YAML, prompt templates) that live in the folders of the modules reached. Snakemake takes these
as inputs, so a rule re-runs exactly when code it executes changes. The whole package is parsed
once per process (tens of milliseconds), never imported.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "labmake"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
DATA_SUFFIXES = (".yaml", ".j2", ".json", ".txt")


def _module_file(name: str) -> Path | None:
    """The file of a labmake module name (``labmake.a.b``), or None if there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(nodes: Iterable[ast.AST], package: str) -> set[str]:
    """labmake modules the import statements among ``nodes`` name (absolute names)."""
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from labmake.x import y` may name a submodule y.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    modules = set()
    for name in found:
        parts = name.split(".")
        # A module's parents are imported with it (their __init__ runs).
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix.startswith(PACKAGE) and _module_file(prefix) is not None:
                modules.add(prefix)
    return modules


def _package_of(path: Path) -> str:
    own = _module_name(path)
    return own if path.name == "__init__.py" else own.rpartition(".")[0]


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(path: Path) -> set[str]:
    """labmake modules ``path`` imports anywhere in its body (function bodies too: they run)."""
    return _imported(ast.walk(_parse(path)), _package_of(path))


def _function_imports(path: Path, function: str) -> set[str]:
    """What running ``function`` of ``path`` imports: the module's own top-level imports and
    those inside that function, not those of the module's other functions."""
    tree = _parse(path)
    nodes: list[ast.AST] = []
    for statement in tree.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if statement.name == function:
                nodes.extend(ast.walk(statement))
        else:
            nodes.extend(ast.walk(statement))
    return _imported(nodes, _package_of(path))


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    return {_module_name(p): frozenset(_imports(p)) for p in files}


def closure(roots: Iterable[str]) -> list[str]:
    """Every labmake module reachable from ``roots`` (module names), sorted."""
    graph = _graph()
    seen: set[str] = set()
    todo = [r for r in roots if r in graph]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph.get(name, ()))
    return sorted(seen)


def _data_files(folder: Path) -> list[Path]:
    """Data files of a package folder, including plain (non-package) subfolders."""
    out = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in DATA_SUFFIXES:
            out.append(path)
        elif path.is_dir() and path.name != "__pycache__" and not (path / "__init__.py").exists():
            out.extend(_data_files(path))
    return out


@functools.cache
def for_script(script: str | Path) -> tuple[str, ...]:
    """The files a rule script runs: the import closure of the stage functions it calls (see
    :func:`_function_imports`), and the data files of the modules reached."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(Path(script).read_text(encoding="utf-8"), str(script))):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            module = _module_file(node.module)
            if module is None:
                continue
            roots |= {m for m in _imported([node], "") if m != node.module}
            for alias in node.names:
                if _module_file(f"{node.module}.{alias.name}") is None:  # a function
                    roots |= _function_imports(module, alias.name)
                    roots.add(node.module)
        elif isinstance(node, ast.Import):
            roots |= _imported([node], "")
    # The module itself is a file the rule runs; its other functions' imports are not followed.
    modules = set(closure(roots - {m for m in roots if _is_stage_module(m)})) | {
        m for m in roots if _is_stage_module(m)
    }
    files = {f for f in map(_module_file, modules) if f is not None}
    data = {d for folder in {f.parent for f in files} for d in _data_files(folder)}
    return tuple(sorted(str(p) for p in files | data))


def _is_stage_module(name: str) -> bool:
    """A module whose functions are followed one by one (so its own imports are not)."""
    return name.startswith(f"{PACKAGE}.stages.")
