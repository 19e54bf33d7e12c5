"""A try project: a small build of a few leaves, in a folder of its own (``labmake try``).

The folder (params.yaml's ``try.folder``, ``build/try`` by default) is a project the
repository's own Snakefile runs in, so a try runs the build's rules and code and nothing else:

    build/try/params.yaml     the project's params.yaml with the ``try:`` budget applied
    build/try/taxonomy/       copies of the leaves tried, and nothing else
    build/try/student/        the last full build's tuned model (a link named by its hash)
    build/try/build/          the try's artifacts; build/try/.snakemake: its Snakemake state

Copies are rewritten only when their bytes differ, so Snakemake sees exactly what an edit
touched. Teacher answers are shared with the build (``$LABMAKE_TEACHER_CACHE``): a leaf the
build already generated for costs the teacher nothing. The build's own artifacts and state are
only ever read.
"""

from __future__ import annotations

import copy
import filecmp
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labmake.core import artifacts, paths
from labmake.core.config import BuildConfig, ConfigError, validate
from labmake.evaluation.models import BASE, PHASE_PREFIX
from labmake.taxonomy.scan import QNA, TOOL_FOLDERS, knowledge_leaves

MARKER = ".labmake-try"  # a folder holding it is a try folder: it may be rewritten
TOOLCHAIN_FILES = ("requirements.lock", "requirements-torch.txt")
# params.yaml keys that name files, relative to the project: made absolute for the try folder.
PATH_KEYS = (
    ("student", "gguf"),
    ("student", "hf"),
    ("student", "chat_template"),
    ("teacher", "gguf"),
    ("evaluate", "judge", "gguf"),
    ("generate", "pipelines_dir"),
    ("generate", "safety", "policy"),
    ("evaluate", "lm_eval", "include_path"),
    ("evaluate", "retention", "qa"),
)
DATASET_OF_KIND = {"knowledge": "knowledge", "skill": "skills"}


class TryError(ValueError):
    """A try cannot be set up; the message says why and what to do."""


@dataclass(frozen=True)
class TryProject:
    root: Path  # the try folder
    home: Path  # the project it tries leaves of (where params.yaml is)
    leaves: tuple[str, ...]
    phases: tuple[str, ...]  # the phases the try trains, in order
    start: str  # what the try tunes, in words
    start_short: str  # the same, for a column's title
    cfg: BuildConfig  # the try's own params

    def path(self, artifact: str) -> Path:
        return self.root / artifact

    @property
    def tried(self) -> str:
        """The evaluation stage's name for the tried model: the base with every phase."""
        return PHASE_PREFIX + self.phases[-1]

    def data_targets(self) -> list[str]:
        return [*(paths.filtered(leaf) for leaf in self.leaves), paths.dataset("eval")]

    def model_targets(self) -> list[str]:
        return [paths.eval_model(BASE), paths.eval_model(self.tried)]


def try_folder(home: Path, folder: str | Path) -> Path:
    """The try folder, refused where writing could touch anything but a try's own files."""
    root = (home / folder).resolve()
    home = home.resolve()
    build = (home / paths.BUILD).resolve()
    if root == build or home.is_relative_to(root):
        raise TryError(
            f"{root}: a try folder cannot be the project, its build folder or a folder above "
            "them; name a folder of its own (default build/try)"
        )
    for part in ("seeds", "generated", "filtered", "data", "base", "checkpoints", "model", "eval"):
        if root.is_relative_to(build / part):
            raise TryError(f"{root}: inside the build's own artifacts; use build/try")
    if root.exists() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise TryError(
            f"{root}: this folder exists and is not a labmake try folder (no {MARKER}); "
            "name an empty or new folder"
        )
    return root


def _get(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _absolute(raw: dict[str, Any], home: Path) -> None:
    """Make params.yaml's relative file names absolute: the try runs in another folder."""
    for keys in PATH_KEYS:
        value = _get(raw, keys)
        parent = _get(raw, keys[:-1])
        if isinstance(value, str) and not Path(value).is_absolute():
            parent[keys[-1]] = str(home / value)
        elif isinstance(value, list):
            parent[keys[-1]] = [str(home / v) if not Path(v).is_absolute() else v for v in value]


def _budget_generate(params: dict[str, Any], cfg: BuildConfig) -> None:
    """The try's counts in the generate section (and yield floors, where pipelines have one)."""
    budget = cfg.try_
    gen = params.setdefault("generate", {})
    gen["requests_per_leaf"] = budget.requests_per_leaf
    counts = {
        "knowledge": {"samples_per_chunk": budget.samples_per_chunk},
        "freeform": {"questions": budget.questions},
        "grounded": {"contexts": budget.contexts},
        "simple": {},
    }
    for name, values in counts.items():
        section = getattr(cfg.generate, name, None)
        if section is None:
            continue
        if hasattr(section, "min_kept"):
            values = {**values, "min_kept": budget.min_kept, "max_requests": budget.max_requests}
        if values:
            gen[name] = {**(gen.get(name) or {}), **values}


def _phases(params: dict[str, Any], datasets: set[str], max_steps: int) -> list[dict[str, Any]]:
    phases = [dict(p) for p in params["train"]["phases"] if p.get("dataset") in datasets]
    if not phases:
        raise TryError(
            f"train.phases in params.yaml has no phase for the {sorted(datasets)} data these "
            "leaves make; add one (dataset: knowledge or skills)"
        )
    for phase in phases:
        phase["max_steps"] = max_steps
    return phases


def try_params(
    raw: dict[str, Any], cfg: BuildConfig, datasets: set[str], student: str | None, home: Path
) -> dict[str, Any]:
    """The try project's params.yaml: the project's, with the ``try:`` budget applied."""
    params = copy.deepcopy(raw)
    params.pop("try", None)
    _absolute(params, home)
    params["taxonomy"] = {**(params.get("taxonomy") or {}), "root": "taxonomy"}
    if student is not None:
        # The last build's tuned GGUF replaces the student, a Hugging Face folder too.
        kept = {k: v for k, v in (params.get("student") or {}).items() if k != "hf"}
        params["student"] = {**kept, "gguf": student}
    _budget_generate(params, cfg)
    params.setdefault("filter", {})["on_empty"] = "fail"  # a try of a dry leaf says so
    params.setdefault("mix", {})["eval_generated_per_leaf"] = cfg.try_.eval_generated_per_leaf
    params["train"] = {**params["train"], "phases": _phases(params, datasets, cfg.try_.max_steps)}
    evaluate = params.setdefault("evaluate", {})
    evaluate["hf_answers"] = True  # the try makes no GGUF: its models answer in transformers
    evaluate["multiple_choice"] = {
        **(evaluate.get("multiple_choice") or {}),
        "questions_per_chunk": cfg.try_.multiple_choice,
    }
    retention = {**(evaluate.get("retention") or {})}
    evaluate["retention"] = {**retention, "prompts": cfg.try_.retention_prompts}
    return params


# ----------------------------------------------------------------------------- the folder


def _leaf_files(source: Path) -> list[Path]:
    """A leaf folder's own files (relative), not those of leaves below it or hidden ones."""
    out = []
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d not in TOOL_FOLDERS and not (here / d / QNA).exists()
        )
        out += [(here / f).relative_to(source) for f in sorted(files) if not f.startswith(".")]
    return out


def sync_view(taxonomy: Path, leaves: list[str], view: Path) -> int:
    """Make ``view`` hold copies of exactly ``leaves``' files; returns how many were written.

    A copy is rewritten only when its bytes differ (then with a new mtime, so Snakemake sees
    the edit even when the source kept an old one)."""
    wanted: set[Path] = set()
    written = 0
    for leaf in leaves:
        for rel in _leaf_files(taxonomy / leaf):
            src, dst = taxonomy / leaf / rel, view / leaf / rel
            wanted.add(dst)
            if dst.is_file() and not dst.is_symlink() and filecmp.cmp(src, dst, shallow=False):
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)
            shutil.copyfile(src, dst)
            written += 1
    for folder, _dirs, files in os.walk(view, topdown=False):
        for name in files:
            if Path(folder, name) not in wanted:
                Path(folder, name).unlink()
        if Path(folder) != view and not any(Path(folder).iterdir()):
            Path(folder).rmdir()
    return written


def _file_sha256(path: Path, record: Path) -> str:
    """sha256 of a large file, remembered by (path, size, mtime) so an unchanged one is read
    once."""
    st = path.stat()
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        known = artifacts.read_json(record)
        if {k: known.get(k) for k in key} == key:
            return str(known["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = artifacts.sha256_file(path)
    artifacts.write_json(record, {**key, "sha256": digest})
    return digest


def link_student(root: Path, gguf: Path) -> str:
    """A link to ``gguf`` named by its content, so a rebuilt model is a new student to the try
    (the base_model rule knows its student by name)."""
    folder = root / "student"
    folder.mkdir(parents=True, exist_ok=True)
    digest = _file_sha256(gguf, folder / "source.json")
    link = folder / f"{gguf.stem}-{digest[:16]}.gguf"
    for old in folder.glob("*.gguf"):
        if old != link:
            old.unlink()
    if not link.is_symlink() or os.readlink(link) != str(gguf):
        link.unlink(missing_ok=True)
        link.symlink_to(gguf)
    return str(link.relative_to(root))


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        artifacts.write_text_atomic(path, text)


def _toolchain_links(root: Path, home: Path) -> None:
    """The lock files as the rules see them (each rule's input), linked to the project's."""
    for name in TOOLCHAIN_FILES:
        link, target = root / name, home / name
        if target.is_file() and not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(target)


def prepare(
    root: Path,
    home: Path,
    raw: dict[str, Any],
    cfg: BuildConfig,
    leaves: list[str],
    student_gguf: Path | None,
) -> TryProject:
    """Write (or bring up to date) the try folder for ``leaves``; nothing else is written."""
    taxonomy = home / cfg.taxonomy.root
    knowledge = set(knowledge_leaves(taxonomy, leaves))
    datasets = {DATASET_OF_KIND["knowledge" if leaf in knowledge else "skill"] for leaf in leaves}
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("a labmake try folder: `labmake try` rewrites it\n")
    student = link_student(root, student_gguf) if student_gguf is not None else None
    params = try_params(raw, cfg, datasets, student, home)
    try:
        try_cfg = validate(copy.deepcopy(params), str(root / "params.yaml"))
    except ConfigError as exc:
        raise TryError(f"the try's params do not check: {exc}") from None
    _write_if_changed(root / "params.yaml", yaml.safe_dump(params, sort_keys=False))
    sync_view(taxonomy, leaves, root / "taxonomy")
    _toolchain_links(root, home)
    start = f"the last build's tuned model ({student_gguf})" if student_gguf else "the base"
    short = "the last build's model" if student_gguf else "the base"
    phases = tuple(p.name for p in try_cfg.train.phases)
    return TryProject(root, home, tuple(leaves), phases, start, short, try_cfg)


def leaf_hash(root: Path, leaf: str) -> str:
    """One hash of a leaf's own files (names and bytes): what a try's result is of."""
    digest = hashlib.sha256()
    for rel in _leaf_files(root / leaf):
        digest.update(f"{rel.as_posix()}\0".encode())
        digest.update(hashlib.sha256((root / leaf / rel).read_bytes()).digest())
    return digest.hexdigest()
