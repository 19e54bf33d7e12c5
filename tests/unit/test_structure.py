"""The shape of the code: packages by stage, imports that run downward, small modules.

Read statically (ast), in well under a second. Imports anywhere in a module count, function
bodies included: a late import is still a dependency, and late imports used to hide cycles.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from labmake.core import code_inputs

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src/labmake"
# Lower layers never import higher ones. Packages in one layer do not import each other.
LAYERS = {
    "core": 0,
    "taxonomy": 1,
    "teacher": 1,
    "sdg": 2,
    "training": 2,
    "export": 1,
    "evaluation": 3,
    "stages": 4,
    "cli": 5,
}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# Longer than the limits, each for a reason (qualified name -> why).
LONG_ALLOWED: dict[str, str] = {}


def _modules() -> dict[str, Path]:
    return {
        code_inputs._module_name(p): p
        for p in sorted(SRC.rglob("*.py"))
        if "__pycache__" not in p.parts
    }


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _edges() -> dict[str, set[str]]:
    graph = code_inputs._graph()
    return {
        m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in graph.items()
    }


def test_no_import_cycles():
    edges = _edges()
    # Package __init__ files are entered whenever a submodule is: ignore parent edges.
    state: dict[str, int] = defaultdict(int)
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges.get(node, ())):
            if state[dep] == 1:
                cycles.append(" -> ".join([*stack[stack.index(dep) :], dep]))
            elif state[dep] == 0:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(edges):
        if state[module] == 0:
            visit(module, [module])
    assert cycles == []


def test_packages_import_only_downward():
    wrong = []
    for module, deps in _edges().items():
        own = _package(module)
        if own not in LAYERS:
            continue
        for dep in deps:
            other = _package(dep)
            if other in ("", own) or other == "testing":
                continue
            if other not in LAYERS or LAYERS[other] >= LAYERS[own]:
                wrong.append(f"{module} imports {dep}")
    assert sorted(wrong) == []


def test_production_code_never_imports_the_test_doubles():
    wrong = [
        f"{m} imports {d}"
        for m, deps in _edges().items()
        if _package(m) != "testing"
        for d in deps
        if _package(d) == "testing"
    ]
    assert wrong == []


def test_every_package_is_known_and_core_stands_alone():
    packages = {_package(m) for m in _modules()} - {""}
    assert packages <= set(LAYERS) | {"testing"}, packages - set(LAYERS)
    for module, deps in _edges().items():
        if _package(module) == "core":
            assert {_package(d) for d in deps} <= {"", "core"}, (module, deps)


def test_scripts_call_one_stage_function_and_nothing_else():
    for script in sorted((REPO / "scripts").glob("*.py")):
        tree = ast.parse(script.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        modules = {n.module for n in imports if isinstance(n, ast.ImportFrom)}
        assert len(imports) == 1 and modules == {f"labmake.stages.{_rules_file(script)}"}, script
        names = [a.name for n in imports for a in n.names]
        assert names == [script.stem], script


def _rules_file(script: Path) -> str:
    """The rules/*.smk file whose rule runs ``script``."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        if f'"../scripts/{script.name}"' in smk.read_text():
            return smk.stem
    pytest.fail(f"no rule runs {script}")


def _long_things() -> list[str]:
    found = []
    for module, path in _modules().items():
        lines = path.read_text().count("\n")
        if lines > MAX_MODULE_LINES and module not in LONG_ALLOWED:
            found.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                name = f"{module}.{node.name}"
                if length > MAX_FUNCTION_LINES and name not in LONG_ALLOWED:
                    found.append(f"{name}: {length} lines")
    return sorted(found)


def test_modules_and_functions_stay_small():
    assert _long_things() == []
