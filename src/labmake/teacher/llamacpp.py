"""The ``llama-cpp`` teacher: a GGUF run in-process by llama-cpp-python (the embedded default).

With ``n_parallel > 1`` (:class:`BatchedLlamaCppTeacher`) one llama.cpp context holds
``n_parallel`` sequences, each with its own slice of the KV cache (``n_ctx`` tokens apiece) and
its own sampler chain seeded from its request's seed. Every step decodes the next token of all
live sequences in ONE batch, so the weights are read once per step for all of them: on 2 CPU
cores this keeps both busy and gave about 1.5x the tokens/s of one sequence at a time
(benchmarks/sdg_throughput.py measures it). With ``n_parallel: 1``
(:class:`LlamaCppTeacher`) llama-cpp-python decodes one sequence at a time.

Determinism: the same group of requests gives the same bytes, run after run. Floating-point
results may depend on the batch's shape, so an answer can differ from the one the single-sequence
path (or another grouping) gives; that is why ``batch_invariant`` is False and
:func:`labmake.teacher.complete.complete_all` always sends the same fixed groups.

``teacher.n_gpu_layers`` puts layers on a GPU (with a llama-cpp-python built for one; a CPU build
ignores it). A GPU's answers may differ from the CPU's, so a non-zero value is part of the
request-cache keys (:func:`sampling_of`).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labmake.core import artifacts
from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import (
    Completion,
    OnDone,
    Request,
    Teacher,
    TeacherError,
    complete_one_by_one,
)
from labmake.teacher.registry import register

# The sampler chain llama-cpp-python's create_completion builds, with its defaults for the knobs
# params.yaml does not expose, so the two paths sample alike.
TOP_K = 40
MIN_P = 0.05
TYPICAL_P = 1.0
PENALTY_LAST_N = 64
N_BATCH = 512


def llama_runtime() -> str:
    from importlib.metadata import version

    return f"llama-cpp-python {version('llama-cpp-python')}"


def sampling_of(cfg: TeacherConfig, decoder: str) -> dict[str, object]:
    """What besides a request shapes a llama-cpp teacher's answer: part of request-cache keys.

    ``n_gpu_layers`` enters only when not 0: a GPU may compute other logits than the CPU (and
    so sample other text), so GPU and CPU answers never share a key, while the keys of a CPU
    teacher stay those of the caches built before the knob existed.
    """
    out: dict[str, object] = {
        "decoder": decoder,
        "temperature": cfg.temperature,
        "top_p": cfg.top_p,
        "repeat_penalty": cfg.repeat_penalty,
        # Another llama.cpp may sample other text from the same request: part of cache keys.
        "runtime": llama_runtime(),
    }
    if cfg.n_gpu_layers != 0:
        out["n_gpu_layers"] = cfg.n_gpu_layers
    return out


class LlamaCppTeacher:
    """A GGUF model run in-process with llama-cpp-python, one sequence at a time.

    The fallback for ``n_parallel: 1``; :class:`BatchedLlamaCppTeacher` is the default.
    """

    batch_size = 1
    batch_invariant = True

    def __init__(self, cfg: TeacherConfig, gguf_path: Path, *, n_ctx: int | None = None) -> None:
        from labmake.core.llama import LlamaLoadError, open_llama

        self.cfg = cfg
        self.n_ctx = cfg.n_ctx
        self.gguf_path = gguf_path
        self.sampling = sampling_of(cfg, "single")
        try:
            self._llm = open_llama(
                gguf_path,
                n_ctx=n_ctx or cfg.n_ctx,
                n_threads=cfg.n_threads,
                n_batch=512,
                n_gpu_layers=cfg.n_gpu_layers,
                seed=0,
            )
        except LlamaLoadError as exc:
            raise TeacherError(f"{exc}; check teacher.gguf in params.yaml") from None

    @functools.cached_property
    def identity(self) -> str:
        # Hashed on first use: a GGUF of hundreds of MB costs seconds that only keyed requests
        # need (an evaluation's decoding has no cache keys).
        digest = artifacts.sha256_file(self.gguf_path)[:16]
        return f"llama-cpp:{self.gguf_path.name}@sha256:{digest}"

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def complete(self, request: Request) -> Completion:
        # The prompt-prefix cache of the previous call changed a greedy output in a measurement:
        # reset it so a request's output depends only on the request itself.
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


@dataclass
class _Sequence:
    request: Request
    prompt: list[int]
    sampler: object
    n_past: int = 0
    last: int = -1
    generated: int = 0
    text: bytearray = field(default_factory=bytearray)
    done: bool = False


class BatchedLlamaCppTeacher(LlamaCppTeacher):
    """Decodes up to ``n_parallel`` requests together; ``complete`` still works one at a time.

    The batch, context, samplers and KV memory are driven through llama-cpp-python's public
    bindings of llama.cpp's C API (``llama_batch_init``, ``llama_decode``, ``llama_sampler_*``,
    ``llama_memory_*``), never its private helper classes.
    """

    batch_invariant = False

    def __init__(self, cfg: TeacherConfig, gguf_path: Path) -> None:
        import llama_cpp

        # The Llama object serves tokenization (and complete()); the batched context below does
        # the work, so the Llama's own context is kept small. Its model (loaded with
        # teacher.n_gpu_layers) is the one the batched context runs.
        super().__init__(cfg, gguf_path, n_ctx=min(cfg.n_ctx, 512))
        self.batch_size = cfg.n_parallel
        self.sampling = sampling_of(cfg, f"batched-{cfg.n_parallel}")
        self._lib = llama_cpp
        params = llama_cpp.llama_context_default_params()
        # Without a unified KV cache every sequence gets n_ctx / n_seq_max cells of its own.
        params.n_ctx = cfg.n_ctx * cfg.n_parallel
        params.n_batch = N_BATCH
        params.n_ubatch = N_BATCH
        params.n_seq_max = cfg.n_parallel
        params.n_threads = cfg.n_threads
        params.n_threads_batch = cfg.n_threads
        params.kv_unified = False
        # Sequences are decoded front to back and dropped whole: the sliding-window layers need
        # only their window of cells, not a full context each.
        params.swa_full = False
        self._ctx = llama_cpp.llama_init_from_model(self._llm.model, params)
        if not self._ctx:
            super().close()
            raise TeacherError(
                f"{gguf_path}: llama.cpp could not make a context for {cfg.n_parallel} sequences "
                f"of {cfg.n_ctx} tokens; lower teacher.n_parallel or teacher.n_ctx"
            )
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._vocab = llama_cpp.llama_model_get_vocab(self._llm.model)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._piece = ctypes.create_string_buffer(256)

    # -- pieces -------------------------------------------------------------------------------

    def _sampler(self, seed: int) -> object:
        """The sampler chain of one sequence (freed by :meth:`_free_samplers`)."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        links = [
            lib.llama_sampler_init_penalties(
                self._n_vocab, PENALTY_LAST_N, self.cfg.repeat_penalty, 0.0, 0.0
            )
        ]
        if self.cfg.temperature == 0.0:
            links.append(lib.llama_sampler_init_greedy())
        else:
            links += [
                lib.llama_sampler_init_top_k(TOP_K),
                lib.llama_sampler_init_typical(TYPICAL_P, 1),
                lib.llama_sampler_init_top_p(self.cfg.top_p, 1),
                lib.llama_sampler_init_min_p(MIN_P, 1),
                lib.llama_sampler_init_temp(self.cfg.temperature),
                lib.llama_sampler_init_dist(seed),
            ]
        for link in links:
            lib.llama_sampler_chain_add(chain, link)  # the chain owns and frees its links
        return chain

    def _prompt_tokens(self, request: Request) -> list[int]:
        # A teacher prompt is text: words like <end_of_turn> in a leaf stay text, never control
        # tokens.
        return self._llm.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=False)

    def _sample(self, s: _Sequence, index: int) -> int:
        return int(self._lib.llama_sampler_sample(s.sampler, self._ctx, index))

    def _token_bytes(self, token: int) -> bytes:
        n = self._lib.llama_token_to_piece(self._vocab, token, self._piece, 256, 0, False)
        return self._piece.raw[: max(n, 0)]

    def _add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        b = self._batch
        j = b.n_tokens
        b.token[j] = token
        b.pos[j] = pos
        b.n_seq_id[j] = 1
        b.seq_id[j][0] = seq_id
        b.logits[j] = logits
        b.n_tokens = j + 1
        return j

    def _decode(self) -> None:
        code = self._lib.llama_decode(self._ctx, self._batch)
        if code != 0:
            raise TeacherError(f"llama.cpp failed to decode a batch (llama_decode returned {code})")

    # -- decoding -----------------------------------------------------------------------------

    def _accept(self, seq_id: int, s: _Sequence, token: int, on_done: OnDone) -> None:
        """Take a sampled token: stop on end-of-generation, a stop string or max_tokens."""
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            self._finish(seq_id, s, True, on_done)
            return
        s.generated += 1
        before = len(s.text)
        s.text += self._token_bytes(token)
        # Only the new bytes (and a stop string's length before them) can complete a stop.
        cut = -1
        for stop in s.request.stop:
            encoded = stop.encode("utf-8")
            at = s.text.find(encoded, max(0, before - len(encoded) + 1))
            if at >= 0 and (cut < 0 or at < cut):
                cut = at
        if cut >= 0:
            del s.text[cut:]
            self._finish(seq_id, s, True, on_done)
        elif s.generated >= s.request.max_tokens:
            self._finish(seq_id, s, False, on_done)
        else:
            s.last = token

    def _finish(self, seq_id: int, s: _Sequence, finished: bool, on_done: OnDone) -> None:
        s.done = True
        self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
        text = bytes(s.text).decode("utf-8", errors="ignore")
        on_done(seq_id, Completion(text=text, finished=finished, completion_tokens=s.generated))

    def complete_many(self, requests: Sequence[Request], on_done: OnDone) -> None:
        """Decode ``requests`` (at most n_parallel) together; report each as it finishes."""
        for start in range(0, len(requests), self.batch_size):
            self._group(requests[start : start + self.batch_size], on_done, start)

    def _group(self, requests: Sequence[Request], on_done: OnDone, offset: int) -> None:
        def report(seq_id: int, completion: Completion) -> None:
            on_done(offset + seq_id, completion)

        self._lib.llama_memory_clear(self._memory, True)
        seqs: list[_Sequence] = []
        for r in requests:
            prompt = self._prompt_tokens(r)
            if len(prompt) + r.max_tokens > self.cfg.n_ctx:
                raise TeacherError(
                    f"a prompt of {len(prompt)} tokens + max_tokens {r.max_tokens} does not fit "
                    f"teacher.n_ctx {self.cfg.n_ctx} (complete_all checks this before sending)"
                )
            seqs.append(_Sequence(r, prompt, self._sampler(r.seed), n_past=len(prompt)))
        try:
            self._run(seqs, report)
        finally:
            for s in seqs:
                self._lib.llama_sampler_free(s.sampler)
            self._lib.llama_memory_clear(self._memory, True)

    def _run(self, seqs: list[_Sequence], report: OnDone) -> None:
        # Prefill: all prompts, packed into batches of N_BATCH tokens. A sequence's first token
        # is sampled right after the batch holding its last prompt token (logits live that long).
        self._batch.n_tokens = 0
        ready: list[tuple[int, int]] = []
        for seq_id, s in enumerate(seqs):
            for pos, token in enumerate(s.prompt):
                last = pos == len(s.prompt) - 1
                j = self._add(token, pos, seq_id, last)
                if last:
                    ready.append((seq_id, j))
                if self._batch.n_tokens == N_BATCH:
                    self._prefill_flush(seqs, ready, report)
                    ready = []
        if self._batch.n_tokens:
            self._prefill_flush(seqs, ready, report)

        # Generation: one token per live sequence per step, all in one batch.
        while True:
            live = [(seq_id, s) for seq_id, s in enumerate(seqs) if not s.done]
            if not live:
                break
            self._batch.n_tokens = 0
            for seq_id, s in live:
                self._add(s.last, s.n_past, seq_id, True)
                s.n_past += 1
            self._decode()
            for j, (seq_id, s) in enumerate(live):
                self._accept(seq_id, s, self._sample(s, j), report)

    def _prefill_flush(
        self, seqs: list[_Sequence], ready: list[tuple[int, int]], report: OnDone
    ) -> None:
        self._decode()
        for seq_id, j in ready:
            s = seqs[seq_id]
            self._accept(seq_id, s, self._sample(s, j), report)
        self._batch.n_tokens = 0

    def close(self) -> None:
        if self._ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None
        super().close()


def open_llama_cpp(cfg: TeacherConfig) -> Teacher:
    """The ``llama-cpp`` backend: batched when ``teacher.n_parallel`` > 1."""
    from labmake.core.models import resolve_gguf

    gguf = resolve_gguf(cfg.gguf)
    if cfg.n_parallel > 1:
        return BatchedLlamaCppTeacher(cfg, gguf)
    return LlamaCppTeacher(cfg, gguf)


register("llama-cpp", open_llama_cpp)
