"""Stage 1 (per leaf): qna.yaml + documents -> build/seeds/{leaf}.json.

The seeds file is the normalized, validated form of one leaf that every later stage reads: its
kind, task, seed examples and, for knowledge, its documents cut into overlapping word chunks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import io
from .config import SeedsConfig
from .taxonomy import Leaf, load_leaf


def chunk_words(text: str, size: int, overlap: int) -> list[str]:
    """Cut ``text`` into chunks of ``size`` words, each sharing ``overlap`` words with the last."""
    words = text.split()
    if not words:
        return []
    step = max(1, size - overlap)
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start : start + size]))
        if start + size >= len(words):
            break
    return chunks


def leaf_record(leaf: Leaf, cfg: SeedsConfig) -> dict[str, Any]:
    documents = []
    chunks: list[str] = []
    for doc in leaf.documents:
        text = doc.read_text(encoding="utf-8")
        documents.append(
            {"name": doc.name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        )
        chunks.extend(chunk_words(text, cfg.chunk_words, cfg.chunk_overlap_words))
    return {
        "leaf": leaf.name,
        "kind": leaf.kind,
        "grounded": leaf.grounded,
        "task_description": leaf.task_description,
        "created_by": leaf.created_by,
        "qna_sha256": hashlib.sha256(leaf.qna_path.read_bytes()).hexdigest(),
        "seed_examples": [
            {"question": s.question, "answer": s.answer, "context": s.context}
            for s in leaf.seed_examples
        ],
        "documents": documents,
        "chunks": chunks,
    }


def run(taxonomy_root: Path, leaf: str, cfg: SeedsConfig, out: Path) -> None:
    loaded = load_leaf(taxonomy_root, leaf)
    if loaded.kind == "knowledge" and not loaded.documents:
        raise ValueError(
            f"{loaded.qna_path}: this knowledge leaf has no document labmake can read. Documents "
            "named by `document: {repo, commit}` are not fetched by this version: copy them beside "
            'the qna.yaml and write `document: {patterns: ["*.md"]}`'
        )
    io.write_json(out, leaf_record(loaded, cfg))
