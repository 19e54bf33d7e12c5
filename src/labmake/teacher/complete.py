"""complete_all: the one way the stages ask a teacher, with the request cache and resume.

It skips prompts that would overflow the teacher's context (reporting them per request),
answers from the request cache, sends the rest in fixed groups, and stores each answer in the
cache the moment it arrives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from labmake.core.hashing import prompt_sha256
from labmake.core.progress import Advance, track
from labmake.teacher.cache import RequestCache, request_key
from labmake.teacher.protocol import (
    Batching,
    Completion,
    Request,
    Teacher,
    TeacherError,
    complete_one_by_one,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Usage:
    """What this process asked of teachers: requests sent and the seconds spent waiting for
    their answers (decoding, or the server's), and requests the cache answered. A job logs
    it (:func:`log_usage`), so a build's time in the teacher can be told from its overhead
    (benchmarks/overhead.py)."""

    sent: int = 0
    seconds: float = 0.0
    cached: int = 0


USAGE = Usage()


@contextlib.contextmanager
def usage_logged(who: str) -> Iterator[None]:
    """Log, at the end of the block, the teacher work this process did inside it."""
    since = dataclasses.replace(USAGE)
    try:
        yield
    finally:
        log_usage(since, who)


def log_usage(since: Usage, who: str) -> None:
    """One line: the teacher work of this process since the snapshot ``since``."""
    log.info(
        "%s: teacher: %d requests sent, %.2f s waiting for answers; %d answered by the cache",
        who,
        USAGE.sent - since.sent,
        USAGE.seconds - since.seconds,
        USAGE.cached - since.cached,
    )


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
    job = _Job(teacher, requests, label, cache)
    with track(label, len(requests)) as advance:
        job.advance = advance
        for i in range(len(requests)):
            job.settle_without_sending(i)
        for group in job.groups_to_send():
            job.send(group)
    return job.answers()


def _groups(indices: list[int], size: int | None) -> list[list[int]]:
    """Fixed groups by position in the request list (``size`` None: one group of all)."""
    if size is None:
        return [indices]
    fixed: dict[int, list[int]] = {}
    for i in indices:
        fixed.setdefault(i // size, []).append(i)
    return [g for _, g in sorted(fixed.items())]


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


class _Job:
    """One complete_all call: its cache keys, what fits, its groups and the answers so far."""

    advance: Advance

    def __init__(
        self,
        teacher: Teacher,
        requests: Sequence[Request],
        label: str,
        cache: RequestCache | None,
    ) -> None:
        self.teacher, self.requests, self.label, self.cache = teacher, requests, label, cache
        traits = Batching.of(teacher)
        self.invariant = traits.batch_invariant
        self.results: list[Completion | None] = [None] * len(requests)
        self.keys = [
            request_key(teacher.identity, traits.sampling, r.prompt, r.seed, r.max_tokens, r.stop)
            for r in requests
        ]
        self.n_prompt = [teacher.count_tokens(r.prompt) for r in requests]
        self.fits = [
            n + r.max_tokens <= teacher.n_ctx for n, r in zip(self.n_prompt, requests, strict=True)
        ]
        self.sendable = [i for i in range(len(requests)) if self.fits[i]]
        self.groups = _groups(self.sendable, None if self.invariant else traits.batch_size)
        if not self.invariant:
            self._key_by_group()

    def _key_by_group(self) -> None:
        # An answer depends on its batch-mates here, so it is cached under its group's keys too:
        # an edit to one request re-runs its group, and the result equals a fresh run's.
        for group in self.groups:
            signature = hashlib.sha256("".join(self.keys[i] for i in group).encode()).hexdigest()
            for i in group:
                self.keys[i] = hashlib.sha256(f"{self.keys[i]}:{signature}".encode()).hexdigest()

    def settle_without_sending(self, i: int) -> None:
        """Answer request ``i`` without the teacher when it cannot fit or is in the cache."""
        if not self.fits[i]:
            self._refuse_overflow(i)
            self.advance()
            return
        entry = self.cache.get(self.keys[i]) if self.cache is not None else None
        if entry is None:
            return
        try:
            self.results[i] = _from_entry(entry)
        except (KeyError, TypeError):
            log.warning("%s: request %d: incomplete cache entry, asking again", self.label, i)
            return
        USAGE.cached += 1
        self.advance()

    def _refuse_overflow(self, i: int) -> None:
        request, n_ctx = self.requests[i], self.teacher.n_ctx
        message = (
            f"prompt of {self.n_prompt[i]} tokens + max_tokens {request.max_tokens} exceeds "
            f"the teacher's context of {n_ctx} tokens; not sent"
        )
        log.warning("%s: request %d: %s", self.label, i, message)
        self.results[i] = Completion(
            text="",
            finished=False,
            teacher=self.teacher.identity,
            prompt_sha256=prompt_sha256(request.prompt),
            seed=request.seed,
            error=message,
        )

    def groups_to_send(self) -> list[list[int]]:
        """The groups with an answer missing; a batch-invariant teacher gets one of all those."""
        groups = self.groups
        if self.invariant:
            groups = [[i for i in self.sendable if self.results[i] is None]]
        return [g for g in groups if any(self.results[i] is None for i in g)]

    def send(self, group: list[int]) -> None:
        def on_done(position: int, completion: Completion) -> None:
            self.store(group[position], completion)

        sub = [self.requests[i] for i in group]
        complete_many = getattr(self.teacher, "complete_many", None)
        start = time.monotonic()
        try:
            if complete_many is None:
                complete_one_by_one(self.teacher, sub, on_done)
            else:
                complete_many(sub, on_done)
        finally:
            USAGE.sent += len(sub)
            USAGE.seconds += time.monotonic() - start

    def store(self, i: int, completion: Completion) -> None:
        """Keep request ``i``'s answer, with its provenance, and cache it at once."""
        request = self.requests[i]
        completion = dataclasses.replace(
            completion,
            teacher=self.teacher.identity,
            prompt_sha256=prompt_sha256(request.prompt),
            seed=request.seed,
        )
        previous = self.results[i]
        if previous is not None:
            # A cached member of a re-run group: the cache already holds this answer.
            if previous.text != completion.text:
                log.warning(
                    "%s: request %d answered differently on re-run; keeping the cached "
                    "answer (the teacher is not deterministic)",
                    self.label,
                    i,
                )
            return
        self.results[i] = completion
        if self.cache is not None and completion.error is None:
            self.cache.put(self.keys[i], _entry(completion))
        self.advance()

    def answers(self) -> list[Completion]:
        missing = [i for i, r in enumerate(self.results) if r is None]
        if missing:
            raise TeacherError(
                f"{self.label}: the teacher returned no answer for requests {missing[:10]}"
            )
        return [r for r in self.results if r is not None]
