"""Teachers: the models that write synthetic data.

A teacher completes text prompts. Every request carries its own seed, so the output of a
request depends only on (teacher identity, sampling parameters, prompt, seed, max_tokens, stop)
and never on what ran before it.

Backends:
- ``llama-cpp``: a GGUF run in-process by llama-cpp-python (the embedded default). With
  ``n_parallel > 1`` it decodes several sequences in one batch (:mod:`labmake.teacher.llamacpp`).
- ``openai``: any OpenAI-compatible server (:mod:`labmake.teacher.openai_compat`).
- ``fake-for-tests``: a deterministic rule-based stand-in used only by the test suite.

:func:`complete_all` is the one entry point for the stages: it skips prompts that would overflow
the teacher's context (reporting them per request), answers from the request cache, sends the
rest, and stores each answer in the cache the moment it arrives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from labmake.core import artifacts
from labmake.core.config import TeacherConfig
from labmake.core.hashing import prompt_sha256
from labmake.core.progress import track

if TYPE_CHECKING:
    from labmake.teacher.cache import RequestCache

log = logging.getLogger(__name__)


class TeacherError(RuntimeError):
    """The teacher could not be started or failed to answer."""


@dataclass(frozen=True)
class Request:
    prompt: str
    seed: int
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    finished: bool  # False when the teacher stopped at max_tokens: the last item may be cut off
    # Provenance, filled in by complete_all: who answered which prompt with which seed.
    teacher: str = ""
    prompt_sha256: str = ""
    seed: int = 0
    completion_tokens: int = 0  # as counted by the teacher (0 when the backend does not say)
    # Set when the request was never sent (its prompt does not fit the teacher's context) or
    # the teacher refused this one request; ``text`` is then empty.
    error: str | None = None


# complete_many reports each answer as soon as it is done: on_done(position in the list, answer).
OnDone = Callable[[int, Completion], None]


class Teacher(Protocol):
    """What complete_all needs of a backend.

    Optional, read with defaults by complete_all (so a minimal test double needs none of them):
    ``sampling`` (a mapping of everything besides the request that shapes an answer --
    temperature, decoder, ... -- made part of cache keys; default {}), ``batch_size`` (how many
    requests ``complete_many`` takes at once; default 1), ``batch_invariant`` (whether an answer
    is independent of the other requests in the same call; default True. A batched decoder's
    float rounding depends on what shares its batch, so complete_all then sends FIXED groups)
    and ``complete_many(requests, on_done)`` (default: ``complete`` one by one).
    """

    identity: str  # names the model and its bytes, e.g. "llama-cpp:gemma-3-270m.gguf@sha256:ab12.."
    n_ctx: int  # the context one request may fill: prompt tokens + max_tokens

    def count_tokens(self, text: str) -> int: ...

    def complete(self, request: Request) -> Completion: ...

    def close(self) -> None: ...


def llama_runtime() -> str:
    from importlib.metadata import version

    return f"llama-cpp-python {version('llama-cpp-python')}"


def complete_one_by_one(teacher: Any, requests: Sequence[Request], on_done: OnDone) -> None:
    """complete_many for a teacher that answers one request at a time."""
    for i, request in enumerate(requests):
        on_done(i, teacher.complete(request))


class LlamaCppTeacher:
    """A GGUF model run in-process with llama-cpp-python, one sequence at a time.

    The fallback for ``n_parallel: 1``; :class:`labmake.teacher.llamacpp.BatchedLlamaCppTeacher`
    is the default.
    """

    batch_size = 1
    batch_invariant = True

    def __init__(self, cfg: TeacherConfig, gguf_path: Path, *, n_ctx: int | None = None) -> None:
        from labmake.core.llama import LlamaLoadError, open_llama

        self.cfg = cfg
        self.n_ctx = cfg.n_ctx
        self.identity = f"llama-cpp:{gguf_path.name}@sha256:{artifacts.sha256_file(gguf_path)[:16]}"
        self.sampling = {
            "decoder": "single",
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "repeat_penalty": cfg.repeat_penalty,
            # Another llama.cpp may sample other text from the same request: part of cache keys.
            "runtime": llama_runtime(),
        }
        try:
            self._llm = open_llama(
                gguf_path, n_ctx=n_ctx or cfg.n_ctx, n_threads=cfg.n_threads, n_batch=512, seed=0
            )
        except LlamaLoadError as exc:
            raise TeacherError(f"{exc}; check teacher.gguf in params.yaml") from None

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
        return Completion(
            text=choice["text"],
            finished=choice["finish_reason"] != "length",
            completion_tokens=int(out.get("usage", {}).get("completion_tokens", 0)),
        )

    def complete_many(self, requests: Sequence[Request], on_done: OnDone) -> None:
        complete_one_by_one(self, requests, on_done)

    def close(self) -> None:
        self._llm.close()


def open_teacher(cfg: TeacherConfig) -> Teacher:
    """Start the teacher that params.yaml names."""
    if cfg.backend == "llama-cpp":
        from labmake.core.models import resolve_gguf

        gguf = resolve_gguf(cfg.gguf)
        if cfg.n_parallel > 1:
            from labmake.teacher.llamacpp import BatchedLlamaCppTeacher

            return BatchedLlamaCppTeacher(cfg, gguf)
        return LlamaCppTeacher(cfg, gguf)
    if cfg.backend == "openai":
        from labmake.teacher.openai_compat import OpenAITeacher

        return OpenAITeacher(cfg)
    if cfg.backend == "fake-for-tests":
        from labmake.testing.fake_teacher import FakeTeacher

        return FakeTeacher(cfg)
    raise TeacherError(
        f"params.yaml: unknown teacher.backend {cfg.backend!r}; use llama-cpp or openai"
    )


def _entry(completion: Completion) -> dict[str, Any]:
    return {
        "text": completion.text,
        "finished": completion.finished,
        "completion_tokens": completion.completion_tokens,
        "teacher": completion.teacher,
        "prompt_sha256": completion.prompt_sha256,
        "seed": completion.seed,
    }


def _from_entry(entry: Mapping[str, Any]) -> Completion:
    return Completion(
        text=entry["text"],
        finished=entry["finished"],
        teacher=entry["teacher"],
        prompt_sha256=entry["prompt_sha256"],
        seed=entry["seed"],
        completion_tokens=entry.get("completion_tokens", 0),
    )


def _groups(indices: list[int], size: int | None) -> list[list[int]]:
    """Fixed groups by position in the request list (``size`` None: one group of all)."""
    if size is None:
        return [indices]
    fixed: dict[int, list[int]] = {}
    for i in indices:
        fixed.setdefault(i // size, []).append(i)
    return [g for _, g in sorted(fixed.items())]


def complete_all(
    teacher: Teacher,
    requests: Sequence[Request],
    label: str,
    cache: RequestCache | None = None,
) -> list[Completion]:
    """Answer every request, in order, showing progress with an ETA.

    - A request whose prompt plus ``max_tokens`` does not fit ``teacher.n_ctx`` is never sent:
      its Completion carries ``error`` and empty text.
    - With a cache, answered requests are read back and each new answer is stored the moment it
      arrives, so a killed run loses at most the requests in flight.
    - Determinism: when the teacher's answers depend on what shares a batch
      (``batch_invariant`` False), requests go out in FIXED groups of ``batch_size`` by their
      index in ``requests``, a group with any answer missing is re-run whole, and cache keys
      include the group's. A resumed run therefore decodes exactly the batches an uninterrupted
      run decodes: identical bytes.
    """
    from labmake.teacher.cache import request_key

    sampling = dict(getattr(teacher, "sampling", {}))
    batch_size = max(1, int(getattr(teacher, "batch_size", 1)))
    invariant = bool(getattr(teacher, "batch_invariant", True))
    results: list[Completion | None] = [None] * len(requests)
    keys = [
        request_key(teacher.identity, sampling, r.prompt, r.seed, r.max_tokens, r.stop)
        for r in requests
    ]
    n_prompt = [teacher.count_tokens(r.prompt) for r in requests]
    fits = [n + r.max_tokens <= teacher.n_ctx for n, r in zip(n_prompt, requests, strict=True)]
    sendable = [i for i in range(len(requests)) if fits[i]]
    groups = _groups(sendable, None if invariant else batch_size)
    if not invariant:
        # An answer depends on its batch-mates here, so it is cached under its group's keys too:
        # an edit to one request re-runs its group, and the result equals a fresh run's.
        for group in groups:
            signature = hashlib.sha256("".join(keys[i] for i in group).encode()).hexdigest()
            for i in group:
                keys[i] = hashlib.sha256(f"{keys[i]}:{signature}".encode()).hexdigest()
    with track(label, len(requests)) as advance:
        for i, request in enumerate(requests):
            if not fits[i]:
                message = (
                    f"prompt of {n_prompt[i]} tokens + max_tokens {request.max_tokens} exceeds "
                    f"the teacher's context of {teacher.n_ctx} tokens; not sent"
                )
                log.warning("%s: request %d: %s", label, i, message)
                results[i] = Completion(
                    text="",
                    finished=False,
                    teacher=teacher.identity,
                    prompt_sha256=prompt_sha256(request.prompt),
                    seed=request.seed,
                    error=message,
                )
                advance()
                continue
            entry = cache.get(keys[i]) if cache is not None else None
            if entry is not None:
                try:
                    results[i] = _from_entry(entry)
                except (KeyError, TypeError):
                    log.warning("%s: request %d: incomplete cache entry, asking again", label, i)
                    continue
                advance()

        if invariant:
            groups = [[i for i in sendable if results[i] is None]]
        groups = [g for g in groups if any(results[i] is None for i in g)]

        for group in groups:

            def on_done(position: int, completion: Completion, group: list[int] = group) -> None:
                i = group[position]
                request = requests[i]
                completion = dataclasses.replace(
                    completion,
                    teacher=teacher.identity,
                    prompt_sha256=prompt_sha256(request.prompt),
                    seed=request.seed,
                )
                previous = results[i]
                if previous is not None:
                    # A cached member of a re-run group: the cache already holds this answer.
                    if previous.text != completion.text:
                        log.warning(
                            "%s: request %d answered differently on re-run; keeping the cached "
                            "answer (the teacher is not deterministic)",
                            label,
                            i,
                        )
                    return
                results[i] = completion
                if cache is not None and completion.error is None:
                    cache.put(keys[i], _entry(completion))
                advance()

            sub = [requests[i] for i in group]
            complete_many = getattr(teacher, "complete_many", None)
            if complete_many is None:
                complete_one_by_one(teacher, sub, on_done)
            else:
                complete_many(sub, on_done)

    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise TeacherError(f"{label}: the teacher returned no answer for requests {missing[:10]}")
    return [r for r in results if r is not None]
