"""Stage 1 (per leaf): qna.yaml + documents -> build/seeds/{leaf}.json.

The seeds file is the normalized, validated form of one leaf that every later stage reads: its
kind, task, seed examples and, for knowledge, its documents (files beside the qna.yaml or a
git repository at a pinned commit) cut into overlapping chunks of tokens.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import SeedsConfig, StudentConfig, TeacherConfig
from labmake.taxonomy.chunking import chunk_tokens, gguf_token_counter
from labmake.taxonomy.document_sources import DocumentSources
from labmake.taxonomy.formats import BUILTIN, ConverterChoice
from labmake.taxonomy.git_documents import read_documents
from labmake.taxonomy.leaf import Leaf, load_leaf


def tokenizer_gguf(teacher: TeacherConfig, student: StudentConfig) -> Path:
    """The GGUF whose tokenizer measures chunks: the teacher's, which reads them in its prompts,
    unless the teacher is served over HTTP (its tokenizer is out of reach): then the student's."""
    from labmake.core.models import resolve_gguf, resolve_student_gguf

    if teacher.backend == "openai":
        return resolve_student_gguf(student)  # a Hugging Face student's: its F16 export
    return resolve_gguf(teacher.gguf)


def documents_of(
    leaf: Leaf, sources: DocumentSources | None, choice: ConverterChoice = BUILTIN
) -> list[tuple[dict[str, Any], str]]:
    """(record, text) of each document, local files or a git repository at a commit (one that
    ``sources``, params.yaml's taxonomy.document_sources, allows); a record says which file,
    its format and the converter that gave its text."""
    if leaf.document_repo is not None:
        docs = read_documents(
            leaf.qna_path,
            leaf.document_repo,
            leaf.document_commit or "",
            leaf.document_patterns,
            sources,
            choice=choice,
        )
        return [
            (
                {**d.converted.record(d.name), "repo": leaf.document_repo, "commit": d.commit},
                d.text,
            )
            for d in docs
        ]
    return [
        (converted.record(path.name), converted.text)
        for path, converted in zip(leaf.documents, leaf.converted, strict=True)
    ]


def leaf_record(
    leaf: Leaf,
    cfg: SeedsConfig,
    count_tokens: Callable[[str], int] | None,
    sources: DocumentSources | None = None,
) -> dict[str, Any]:
    """``count_tokens`` measures chunks; it may be None for a leaf without documents.
    ``sources``: where git documents may come from (None: public https repositories)."""
    documents = []
    chunks: list[str] = []
    for record, text in documents_of(leaf, sources, ConverterChoice.of(cfg)):
        documents.append(record)
        if count_tokens is None:
            raise ValueError(f"{leaf.qna_path}: documents need a tokenizer to be chunked")
        chunks.extend(chunk_tokens(text, count_tokens, cfg.chunk_tokens, cfg.chunk_overlap_tokens))
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


def run(
    taxonomy_root: Path,
    leaf: str,
    cfg: SeedsConfig,
    teacher: TeacherConfig,
    student: StudentConfig,
    out: Path,
    sources: DocumentSources | None = None,
) -> None:
    loaded = load_leaf(taxonomy_root, leaf, ConverterChoice.of(cfg))
    if loaded.kind == "knowledge" and not loaded.documents and loaded.document_repo is None:
        raise ValueError(
            f"{loaded.qna_path}: this knowledge leaf names no document; put the documents beside "
            'the qna.yaml and write `document: {patterns: ["*.md"]}`, or name a git repository '
            "with `document: {repo: URL, commit: FULL_ID, patterns: [...]}`"
        )
    counter = None
    if loaded.kind == "knowledge":
        counter = gguf_token_counter(tokenizer_gguf(teacher, student))
    artifacts.write_json(out, leaf_record(loaded, cfg, counter, sources))
