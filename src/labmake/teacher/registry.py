"""Teacher backends by name: ``teacher.backend`` in params.yaml picks one.

Each backend module registers itself when imported (``register("llama-cpp", factory)``). The
shipped ones (``llama-cpp``, ``openai``) are imported by the ``labmake.teacher`` package, so
they are registered before anything here can be used, and a rule that opens a teacher counts
their files among its code inputs. Other backends are plugins: modules named, comma-separated,
in the environment variable ``LABMAKE_TEACHER_PLUGINS``, imported on lookup. The test suite's
fake teacher comes in that way, so production code never imports it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Teacher, TeacherError

PLUGINS_ENV = "LABMAKE_TEACHER_PLUGINS"

# Starts the backend a config names; raises TeacherError when it cannot.
Factory = Callable[[TeacherConfig], Teacher]

_FACTORIES: dict[str, Factory] = {}
# Backends that hold a model in the process that opens them (not a client of a server): worth
# one shared teacher process per machine allocation (labmake.teacher.shared).
_LOADS_MODEL: set[str] = set()


def register(name: str, factory: Factory, *, loads_model: bool = True) -> None:
    """Make ``factory`` the backend called ``name``; a second, different one is a bug.

    ``loads_model``: False for a client of a server (openai), which costs nothing to open."""
    known = _FACTORIES.get(name)
    if known is not None and _origin(known) != _origin(factory):
        raise TeacherError(
            f"teacher backend {name!r} is registered twice ({_origin(known)} and "
            f"{_origin(factory)}); give one of them another name"
        )
    _FACTORIES[name] = factory
    if loads_model:
        _LOADS_MODEL.add(name)
    else:
        _LOADS_MODEL.discard(name)


def loads_model(name: str) -> bool:
    """Whether the backend ``name`` loads a model in the process that opens it."""
    _load_plugins()
    return name in _LOADS_MODEL


def _origin(factory: Factory) -> str:
    # A module imported again (a reload) registers an equal factory: not a conflict.
    return f"{factory.__module__}.{getattr(factory, '__qualname__', repr(factory))}"


def _load_plugins() -> None:
    """Import the modules ``LABMAKE_TEACHER_PLUGINS`` names (each once; later calls are free)."""
    for module in os.environ.get(PLUGINS_ENV, "").split(","):
        module = module.strip()
        if not module:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:
            raise TeacherError(
                f"{PLUGINS_ENV}: cannot import the teacher plugin module {module!r} "
                f"({type(exc).__name__}: {exc}); fix the module or remove it from {PLUGINS_ENV}"
            ) from exc


def names() -> list[str]:
    """The registered backends' names, sorted."""
    _load_plugins()
    return sorted(_FACTORIES)


def backend_problem(cfg: TeacherConfig, key: str = "teacher") -> str | None:
    """Why the section at ``key`` (teacher, evaluate.judge) names no known backend, or None.

    The schema cannot list the backends (plugins, named in ``LABMAKE_TEACHER_PLUGINS``, add
    theirs), so the CLI asks this before a build starts, and :func:`open_teacher` before a
    stage uses one."""
    known = names()
    if cfg.backend in _FACTORIES:
        return None
    choices = " or ".join([", ".join(known[:-1]), known[-1]] if len(known) > 1 else known)
    return f"params.yaml: unknown {key}.backend {cfg.backend!r}; use {choices}"


def open_teacher(cfg: TeacherConfig, key: str = "teacher") -> Teacher:
    """Start the teacher that params.yaml names at ``key``."""
    problem = backend_problem(cfg, key)
    if problem is not None:
        raise TeacherError(problem)
    return _FACTORIES[cfg.backend](cfg)
