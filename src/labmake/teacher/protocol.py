"""What a teacher is: the requests it answers, the completions it returns, the protocol.

A teacher completes text prompts. Every request carries its own seed, so the output of a
request depends only on (teacher identity, sampling parameters, prompt, seed, max_tokens, stop)
and never on what ran before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


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


@dataclass(frozen=True)
class Batching:
    """A teacher's optional traits (see :class:`Teacher`), with their defaults."""

    sampling: dict[str, Any]
    batch_size: int
    batch_invariant: bool

    @classmethod
    def of(cls, teacher: Any) -> Batching:
        return cls(
            sampling=dict(getattr(teacher, "sampling", {})),
            batch_size=max(1, int(getattr(teacher, "batch_size", 1))),
            batch_invariant=bool(getattr(teacher, "batch_invariant", True)),
        )


def complete_one_by_one(teacher: Any, requests: Sequence[Request], on_done: OnDone) -> None:
    """complete_many for a teacher that answers one request at a time."""
    for i, request in enumerate(requests):
        on_done(i, teacher.complete(request))
