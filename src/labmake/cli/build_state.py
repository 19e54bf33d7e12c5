"""What the last successful ``labmake build`` saw: a no-op build need not start Snakemake.

At thousands of leaves Snakemake takes tens of seconds to build and check a DAG of thousands of
jobs only to say "Nothing to be done", and validating every qna.yaml again takes as long. After
a build that finished, ``labmake build`` records a signature of everything the build read --
params.yaml, the workflow (Snakefile, rules, scripts, profile), labmake's code and data, the
toolchain lock, every file of the taxonomy -- and of everything it wrote under build/. When both
are the same at the next ``labmake build`` (with no Snakemake arguments), nothing can have
changed and Snakemake is not started; any difference, however small (a touched file, a deleted
output), falls through to Snakemake, which remains the judge of what to run.

Files are compared by path, size and modification time (the way Snakemake first looks at them
too), so a signature costs a directory walk, not a read of every file. Leaves that passed
validation are remembered the same way, per leaf folder, so that a build after editing one leaf
validates that leaf only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labmake.core import artifacts

STATE_DIR = Path(".snakemake/labmake")
BUILD_STATE = STATE_DIR / "build-state.json"
VALIDATED = STATE_DIR / "validated-leaves.json"
FORMAT = 1
WORKFLOW = ("Snakefile", "rules", "scripts", "requirements.lock", "requirements-torch.txt")
# Under build/, what no rule writes: logs, timings, caches, the try corner.
NOT_OUTPUTS = ("logs", "benchmarks", "cache", "try")


def _files(root: Path, *, skip: Iterable[str] = ()) -> Iterator[Path]:
    """Every file under ``root`` (or ``root`` itself), hidden and tool folders left out."""
    if root.is_file():
        yield root
        return
    skipped = set(skip)  # names of top-level folders only
    for folder, dirs, names in os.walk(root):
        top = Path(folder) == root
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (top and d in skipped))
        for name in sorted(names):
            if not name.startswith("."):
                yield Path(folder) / name


def signature(paths: Iterable[Path], *, relative_to: Path) -> str:
    """One hash of the (path, size, mtime) of every file given, in a stable order."""
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        stat = path.stat()
        rel = os.path.relpath(path, relative_to)
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class Inputs:
    """Where a build's inputs are: the project, its params file, taxonomy, profile, code."""

    project: Path
    params: Path
    taxonomy: Path
    profile: Path
    code: Path
    student: tuple[Path, ...] = ()  # a Hugging Face student's files, a chat template file

    def files(self) -> list[Path]:
        found = [self.params, *_files(self.taxonomy), *_files(self.profile), *_files(self.code)]
        found += [p for p in self.student if p.is_file()]
        for name in WORKFLOW:
            if (self.project / name).exists():
                found.extend(_files(self.project / name))
        return found

    def signature(self) -> str:
        env = os.environ.get("LABMAKE_TEACHER_PLUGINS", "")
        return hashlib.sha256(
            (signature(self.files(), relative_to=self.project) + env).encode()
        ).hexdigest()


def outputs_signature(project: Path) -> str:
    build = project / "build"
    files = list(_files(build, skip=NOT_OUTPUTS)) if build.is_dir() else []
    return signature(files, relative_to=project)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("format") == FORMAT else {}


def unchanged_since_last_build(inputs: Inputs) -> bool:
    """True when the last build finished and neither its inputs nor its outputs changed."""
    state = _read(inputs.project / BUILD_STATE)
    return (
        bool(state)
        and state.get("inputs") == inputs.signature()
        and state.get("outputs") == outputs_signature(inputs.project)
    )


def record_build(inputs: Inputs) -> None:
    """Remember a build that finished (its outputs as they are now)."""
    artifacts.write_json(
        inputs.project / BUILD_STATE,
        {
            "format": FORMAT,
            "inputs": inputs.signature(),
            "outputs": outputs_signature(inputs.project),
        },
    )


def forget_build(project: Path) -> None:
    (project / BUILD_STATE).unlink(missing_ok=True)


# ------------------------------------------------------------------ leaves already validated


def leaf_signatures(taxonomy: Path, leaves: Iterable[str], context: str) -> dict[str, str]:
    """Per leaf: the signature of its folder's own files (not sub-leaves) under ``context``
    (what else validation depends on: labmake's code, the params it reads)."""
    out = {}
    for leaf in leaves:
        folder = taxonomy / leaf
        own = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
        out[leaf] = hashlib.sha256(
            (context + signature(own, relative_to=taxonomy)).encode()
        ).hexdigest()
    return out


def already_valid(project: Path, current: dict[str, str]) -> set[str]:
    """The leaves whose folder and context are as when they last passed validation."""
    recorded = _read(project / VALIDATED).get("leaves", {})
    return {leaf for leaf, sig in current.items() if recorded.get(leaf) == sig}


def record_valid(project: Path, current: dict[str, str]) -> None:
    artifacts.write_json(project / VALIDATED, {"format": FORMAT, "leaves": current})


def code_signature(code: Path) -> str:
    """labmake's own files: validation and the build depend on them."""
    return signature(_files(code), relative_to=code)
