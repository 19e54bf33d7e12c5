"""Shared fixtures. Heavy imports (torch, transformers, llama_cpp) stay inside the fixtures so
that tests which need no model start fast."""

from __future__ import annotations

import os

# llama.cpp's OpenMP threads spin-wait by default and slow to a crawl on a busy 2-core machine;
# this must be set before torch or llama_cpp is first imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The fake teacher (backend fake-for-tests) is a plugin of the teacher registry: production code
# never imports it. Set here, in the environment, so that the Snakemake processes the workflow
# tests start (and their jobs) register it too.
os.environ.setdefault("LABMAKE_TEACHER_PLUGINS", "labmake.testing.fake_teacher")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer-only GGUF (512-token SentencePiece, Gemma layout), alone in its folder."""
    import tiny

    return tiny.make_tokenizer_gguf(tmp_path_factory.mktemp("tiny_tokenizer") / "tokenizer.gguf")


@pytest.fixture(scope="session")
def tiny_hf_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma 3 in labmake's base-folder layout (what convert_gguf_to_hf writes)."""
    import tiny

    return tiny.make_hf_student(tmp_path_factory.mktemp("tiny_student") / "base")


@pytest.fixture(scope="session")
def tiny_student_gguf(tmp_path_factory: pytest.TempPathFactory, tiny_hf_student: Path) -> Path:
    """The same tiny student as one F32 GGUF with its tokenizer."""
    import tiny

    out = tmp_path_factory.mktemp("tiny_student_gguf") / "tiny-student.gguf"
    return tiny.make_student_gguf(out, hf_dir=tiny_hf_student)
