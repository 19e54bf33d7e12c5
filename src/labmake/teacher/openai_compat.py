"""The ``openai`` teacher: any OpenAI-compatible server (vLLM, llama.cpp's server, a hosted API).

Requests go out concurrently (``teacher.concurrency`` threads). The server is not trusted: each
request has one deadline, ``teacher.timeout_s``, for connecting and for every byte of the reply;
a body is read up to a size cap (decompressed here, never past the cap); control characters
and terminal escapes are removed from answers; and a server's own words reach a message or a
log only redacted (:mod:`labmake.teacher.bounded`). Transient
failures -- 408/429/5xx, timeouts, refused or dropped connections, bodies that are not the
expected JSON -- are retried with exponential backoff (honouring ``Retry-After``), at most
``teacher.max_retries`` times; then a :class:`TeacherError` names the URL, what went wrong and
the fix. A request the server rejects on its own merits (400/413/422, e.g. too long) comes back
as a per-request error instead of stopping the build.

The API key is read from the environment variable that ``teacher.api_key_env`` names. It is
only ever put in the ``Authorization`` header: never in the identity, cache keys, records, logs
or messages, even when a server echoes it back (the tests grep for it). A ``base_url`` with
``user:password@`` is refused: those credentials would replace the key and be printed with the
URL.

Determinism depends on the server: the request's seed is sent, and servers that honour it
(llama.cpp, vLLM) give the same text for the same request.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from labmake.core.config import TeacherConfig
from labmake.teacher.bounded import BodyError, clean_answer, read_body, redact
from labmake.teacher.protocol import Completion, OnDone, Request, TeacherError
from labmake.teacher.registry import register

log = logging.getLogger(__name__)

# OpenAI's API accepts at most four stop strings; the rest are applied here, on the answer.
MAX_SERVER_STOPS = 4
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
REJECT_STATUS = {400, 413, 422}
ERROR_BODY_BYTES = 8 << 10  # of an error reply: enough for its message


def redact_url(url: str) -> str:
    """The URL without user:password@ or a query string (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    at = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:at], True) if at >= 0 else (text, False)


class _Transient(Exception):
    """A failure worth another try."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


class OpenAITeacher:
    batch_invariant = True  # each request is independent of the others in flight
    backoff_s = 0.5  # first retry delay; doubles each time (capped by max_backoff_s)
    max_backoff_s = 30.0

    def __init__(self, cfg: TeacherConfig) -> None:
        if not cfg.base_url or not cfg.model:
            raise TeacherError(
                "params.yaml: teacher.backend openai needs teacher.base_url (the server's API "
                "root, e.g. http://127.0.0.1:8000/v1) and teacher.model (a model it serves)"
            )
        if urlsplit(cfg.base_url).username is not None:
            raise TeacherError(
                f"params.yaml: teacher.base_url {redact_url(cfg.base_url)!r} carries a user "
                "name or password (user:password@); remove it and put the key in an "
                "environment variable named by teacher.api_key_env"
            )
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.url = f"{self.base_url}/{'chat/completions' if cfg.chat else 'completions'}"
        self.shown_url = redact_url(self.url)
        self.n_ctx = cfg.n_ctx
        self.batch_size = cfg.concurrency
        self.identity = f"openai:{redact_url(self.base_url)}#{cfg.model}"
        # repeat_penalty is not part of the OpenAI API, so it is neither sent nor part of the key.
        self.sampling = {
            "endpoint": "chat" if cfg.chat else "completions",
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
        }
        # Ask for a plain body; one compressed anyway is inflated by read_body, within its cap.
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        self._secrets: tuple[str, ...] = ()
        if cfg.api_key_env:
            key = os.environ.get(cfg.api_key_env)
            if not key:
                raise TeacherError(
                    f"params.yaml: teacher.api_key_env is {cfg.api_key_env}, but that "
                    f"environment variable is not set; export {cfg.api_key_env}=<your key>"
                )
            self._headers["Authorization"] = f"Bearer {key}"
            self._secrets = (key,)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show headers (the key)
        return f"OpenAITeacher({self.identity!r})"

    def count_tokens(self, text: str) -> int:
        # No tokenizer for a remote model: a deliberately high estimate (English runs at about
        # 4 bytes a token), so a prompt judged to fit does fit.
        return len(text.encode("utf-8")) // 3 + 1

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self._headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _body(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "max_tokens": request.max_tokens,
            "temperature": self.cfg.temperature,
            "top_p": self.cfg.top_p,
            "seed": request.seed,
            "stream": False,
        }
        if request.stop:
            body["stop"] = list(request.stop[:MAX_SERVER_STOPS])
        if self.cfg.chat:
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        return body

    def _parse(self, payload: Any, request: Request) -> Completion:
        choice = payload["choices"][0]
        text = choice["message"]["content"] if self.cfg.chat else choice["text"]
        if not isinstance(text, str):
            raise TypeError("text is not a string")
        text, stopped = _cut_at_stops(clean_answer(text), request.stop)
        usage = payload.get("usage") or {}
        tokens = usage.get("completion_tokens", 0) if isinstance(usage, dict) else 0
        return Completion(
            text=text,
            finished=stopped or choice.get("finish_reason") != "length",
            completion_tokens=tokens if isinstance(tokens, int) else 0,
        )

    def _attempt(self, request: Request) -> Completion:
        timeout = self.cfg.timeout_s
        deadline = time.monotonic() + timeout  # connecting and every byte of the reply
        try:
            response = self._session().post(
                self.url, json=self._body(request), timeout=timeout, stream=True
            )
        except requests.Timeout:
            raise _Transient(f"no answer within {timeout:g} s") from None
        except requests.ConnectionError as exc:
            kind = type(exc.__context__ or exc).__name__
            raise _Transient(f"connection failed or dropped ({kind})") from None
        with response:
            status = response.status_code
            cap = None if status == 200 else ERROR_BODY_BYTES
            try:
                body = self._read(response, deadline, cap)
            except BodyError as exc:
                if status != 200:  # the status says enough; its body is not worth waiting for
                    body = b""
                else:
                    raise _Transient(f"{exc} (teacher.timeout_s is {timeout:g} s)") from None
        if status == 200:
            try:
                return self._parse(json.loads(body), request)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                raise _Transient("malformed response body (not an OpenAI completion)") from None
        return self._refusal(status, body, response.headers.get("Retry-After"))

    def _read(self, response: requests.Response, deadline: float, cap: int | None) -> bytes:
        try:
            if cap is None:
                return read_body(response, deadline)
            return read_body(response, deadline, cap * 64, what="error reply")[:cap]
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            kind = type(exc).__name__
            raise BodyError(f"the reply broke off ({kind})") from None

    def _refusal(self, status: int, body: bytes, retry_after: str | None) -> Completion:
        """A non-200 reply: retried, a per-request error, or the build stops with the fix."""
        snippet = redact(body.decode("utf-8", "replace"), self._secrets)[:200]
        if status in RETRY_STATUS:
            raise _Transient(f"HTTP {status}", _retry_after(retry_after))
        if status in REJECT_STATUS:
            return Completion(text="", finished=False, error=f"HTTP {status}: {snippet}")
        if status in (401, 403):
            hint = (
                f"check the key in ${self.cfg.api_key_env}"
                if self.cfg.api_key_env
                else "this server wants a key: set teacher.api_key_env to the NAME of an "
                "environment variable holding it"
            )
            raise TeacherError(f"{self.shown_url}: HTTP {status}, not authorized; {hint}")
        raise TeacherError(
            f"{self.shown_url}: HTTP {status} ({snippet}); check teacher.base_url (the API "
            "root, usually ending in /v1) and teacher.model in params.yaml"
        )

    def complete(self, request: Request) -> Completion:
        problem = ""
        for attempt in range(self.cfg.max_retries + 1):
            try:
                return self._attempt(request)
            except _Transient as exc:
                problem = str(exc)
                if attempt == self.cfg.max_retries:
                    break
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                delay *= 1 + 0.25 * random.random()  # jitter: concurrent retries spread out
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.max_backoff_s))
                log.warning(
                    "%s: %s; retry %d of %d in %.1f s",
                    self.shown_url,
                    problem,
                    attempt + 1,
                    self.cfg.max_retries,
                    delay,
                )
                time.sleep(delay)
        raise TeacherError(
            f"{self.shown_url}: no valid answer after {self.cfg.max_retries + 1} attempts "
            f"(last: {problem}); check that the server is up and teacher.base_url in "
            "params.yaml points at it, or raise teacher.timeout_s / teacher.max_retries for a "
            "slow or busy server. Answers already received are cached; re-run to resume."
        )

    def complete_many(self, requests: Sequence[Request], on_done: OnDone) -> None:
        """Send up to ``concurrency`` at once; report each answer (on this thread) as it lands.

        On a persistent failure, nothing new is started, the requests in flight finish (and
        are reported, so their answers get cached), then the error is raised.
        """
        failure: TeacherError | None = None
        with ThreadPoolExecutor(self.cfg.concurrency, thread_name_prefix="teacher") as pool:
            pending: dict[Future[Completion], int] = {}
            queue = iter(enumerate(requests))

            def top_up() -> None:
                while failure is None and len(pending) < self.cfg.concurrency:
                    item = next(queue, None)
                    if item is None:
                        return
                    pending[pool.submit(self.complete, item[1])] = item[0]

            top_up()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    try:
                        completion = future.result()
                    except TeacherError as exc:
                        failure = failure or exc
                        continue
                    on_done(index, completion)
                top_up()
        if failure is not None:
            raise failure

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


register("openai", OpenAITeacher, loads_model=False)
