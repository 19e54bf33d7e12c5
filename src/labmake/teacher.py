"""Teachers: the models that write synthetic data.

A teacher completes text prompts. Every request carries its own seed, so the output of a
request depends only on (teacher identity, prompt, sampling parameters, seed) and never on
the order of requests or on what ran before it.

Backends:
- ``llama-cpp``: a GGUF run in-process by llama-cpp-python (the embedded default).
- ``fake-for-tests``: a deterministic rule-based stand-in used only by the test suite.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from . import io
from .config import TeacherConfig
from .progress import track

log = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """The teacher could not be started or failed to answer."""


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool  # False when the teacher stopped at max_tokens: the last item may be cut off


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int
    max_tokens: int
    stop: tuple[str, ...] = ()


class Teacher(Protocol):
    identity: str  # names the model and its bytes, e.g. "llama-cpp:gemma-3-270m.gguf@sha256:ab12.."
    n_ctx: int

    def count_tokens(self, text: str) -> int: ...

    def complete(self, request: Request) -> Completion: ...

    def close(self) -> None: ...


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (global seed, leaf, index, ...)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class LlamaCppTeacher:
    """A GGUF model run in-process with llama-cpp-python."""

    def __init__(self, cfg: TeacherConfig, gguf_path: Path) -> None:
        from llama_cpp import Llama

        self.cfg = cfg
        self.n_ctx = cfg.n_ctx
        self.identity = f"llama-cpp:{gguf_path.name}@sha256:{io.sha256_file(gguf_path)[:16]}"
        try:
            self._llm = Llama(
                model_path=str(gguf_path),
                n_ctx=cfg.n_ctx,
                n_threads=cfg.n_threads,
                n_batch=512,
                seed=0,
                verbose=False,
            )
        except (ValueError, OSError) as exc:
            raise TeacherError(
                f"{gguf_path}: llama.cpp could not load this GGUF ({exc}); "
                "check teacher.gguf in params.yaml"
            ) from None

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def complete(self, request: Request) -> Completion:
        # The prompt-prefix cache of the previous call changes sampling results: reset it so a
        # request's output depends only on the request itself (FIELD-NOTES).
        self._llm.reset()
        out = self._llm.create_completion(
            request.prompt,
            max_tokens=request.max_tokens,
            temperature=self.cfg.temperature,
            top_p=self.cfg.top_p,
            repeat_penalty=self.cfg.repeat_penalty,
            seed=request.seed,
            stop=list(request.stop) or None,
        )
        choice = out["choices"][0]
        return Completion(text=choice["text"], finished=choice["finish_reason"] != "length")

    def close(self) -> None:
        self._llm.close()


def open_teacher(cfg: TeacherConfig) -> Teacher:
    """Start the teacher that params.yaml names."""
    if cfg.backend == "llama-cpp":
        from .student import resolve_gguf

        return LlamaCppTeacher(cfg, resolve_gguf(cfg.gguf))
    if cfg.backend == "fake-for-tests":
        from .testing.fake_teacher import FakeTeacher

        return FakeTeacher(cfg)
    raise TeacherError(f"params.yaml: unknown teacher.backend {cfg.backend!r}; use llama-cpp")


def complete_all(teacher: Teacher, requests: Sequence[Request], label: str) -> list[Completion]:
    """Run requests in order, showing progress with an ETA."""
    results: list[Completion] = []
    with track(label, len(requests)) as advance:
        for request in requests:
            results.append(teacher.complete(request))
            advance()
    return results
