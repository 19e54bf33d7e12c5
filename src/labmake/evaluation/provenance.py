"""Where an artifact came from: content hashes of what went into a build.

Values here end up inside artifacts (GGUF metadata, manifest.json), so they are content
hashes and versions only: no dates, no absolute paths, nothing that differs between two
builds of the same inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake import __version__
from labmake.core import artifacts, toolchain
from labmake.core.git import GitError, run_git
from labmake.core.hashing import params_hash
from labmake.core.models import base_source


def taxonomy_hash(seeds_paths: Sequence[Path]) -> str:
    """One hash over every leaf's qna.yaml and document hashes (order-independent)."""
    parts = []
    for path in seeds_paths:
        seeds = artifacts.read_json(path)
        docs = ",".join(d["sha256"] for d in seeds["documents"])
        parts.append(f"{seeds['leaf']}:{seeds['qna_sha256']}:{docs}")
    return hashlib.sha256("\n".join(sorted(parts)).encode("utf-8")).hexdigest()


def git_commit(path: str | Path) -> str:
    """The last commit that touched ``path`` ("unknown" outside git), plus "-dirty" if edited."""
    path = Path(path).resolve()
    where = str(path if path.is_dir() else path.parent)  # works from any current directory
    try:
        log = run_git("log", "-1", "--format=%H", "--", str(path), repo=where)
        if log.returncode != 0:
            return "unknown"
        status = run_git("status", "--porcelain", "--", str(path), repo=where)
        if status.returncode != 0:
            return "unknown"
    except (OSError, GitError):
        return "unknown"
    commit, dirty = log.stdout.strip(), status.stdout.strip()
    return (commit or "uncommitted") + ("-dirty" if dirty else "")


def collect(
    *,
    params: dict[str, Any],
    seeds_paths: Sequence[Path],
    generated_paths: Sequence[Path],
    mix_stats: Path,
    base_dir: Path,
    taxonomy_root: str,
    project_root: Path = Path("."),
) -> dict[str, str | int]:
    """The ``labmake.*`` provenance keys written into every GGUF and the manifest, the
    toolchain that built it (``labmake.toolchain.*``, read from ``project_root``'s lock) included."""
    base_name, base_sha = base_source(base_dir)
    sizes = artifacts.read_json(mix_stats)["sizes"]
    info: dict[str, str | int] = {
        "labmake.version": __version__,
        "labmake.base_model": base_name,
        "labmake.base_model_sha256": base_sha,
        "labmake.params_sha256": params_hash(params),
        "labmake.taxonomy_sha256": taxonomy_hash(seeds_paths),
        "labmake.taxonomy_commit": git_commit(taxonomy_root),
        "labmake.teacher": teacher_identity(generated_paths),
        "labmake.leaves": len(seeds_paths),
        **toolchain.provenance(project_root),
    }
    # A GGUF's file name less .gguf; a Hugging Face folder's name as it is (dots included).
    stem = Path(base_name).stem if base_name.endswith(".gguf") else base_name
    stem = "model" if base_name == "unknown" else stem
    info["general.name"] = f"{stem} (labmake)"
    info["general.version"] = str(info["labmake.taxonomy_sha256"])[:12]
    for name, size in sorted(sizes.items()):
        info[f"labmake.dataset.{name}"] = int(size)
    return dict(sorted(info.items()))


def teacher_identity(generated_paths: Sequence[Path]) -> str:
    names = set()
    for path in generated_paths:
        for record in artifacts.iter_jsonl(path):
            names.add(record["teacher"])
            break
    return ",".join(sorted(names)) or "none"


def file_entry(path: Path) -> dict[str, Any]:
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": artifacts.sha256_file(path)}


def write_manifest(out: Path, gguf_with_provenance: Path, outputs: Sequence[Path]) -> None:
    """The build's inputs (read back from a GGUF it wrote, so both always agree) and outputs."""
    from labmake.export.writer import read_metadata

    provenance = {
        key: value
        for key, value in read_metadata(gguf_with_provenance).items()
        if key.startswith(("labmake.", "general."))
    }
    files = []
    for path in sorted(outputs):
        if path.is_dir():
            files.extend(file_entry(p) for p in sorted(path.rglob("*")) if p.is_file())
        else:
            files.append(file_entry(path))
    artifacts.write_json(out, {"inputs": provenance, "outputs": files})
