"""Teacher throughput: labmake's batched complete_all against raw llama.cpp, one leaf, one run.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sdg_throughput.py [--leaf LEAF] [--requests N]

Both sides get the same prompts (the leaf's generate prompts, from its pipeline's dry run), seeds,
sampling, max_tokens and stop strings, and the embedded teacher GGUF with the same threads.
By default the requests are those of the pipeline's longest-output block (the answers: where
decoding, not prompt reading, is the work); ``--mix`` takes every block's requests in their
share instead (judges answer in a few tokens, so prompt reading dominates and batching gains
less).
  (a) raw: llama_cpp.Llama.create_completion, one request at a time (reset before each, as a
      serial SDG loop with a local model does);
  (b) labmake: teacher.complete_all with the llama-cpp backend, n_parallel sequences per batch.
Throughput is generated tokens over wall time, prompt processing included (it is part of the
work), model loading excluded. It prints b/a; the target is >= 1.3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaf", default="compositional_skills/writing/freeform/haiku")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--n-parallel", type=int, default=None, help="default: params.yaml's")
    parser.add_argument("--mix", action="store_true", help="every block's requests, not answers")
    args = parser.parse_args()

    from labmake.core import config
    from labmake.core.llama import open_llama
    from labmake.core.models import resolve_gguf
    from labmake.sdg import generation
    from labmake.taxonomy import seeds
    from labmake.taxonomy.leaf import load_leaf
    from labmake.teacher.complete import complete_all
    from labmake.teacher.registry import open_teacher

    cfg = config.load(ROOT / "params.yaml")
    teacher_cfg = replace(cfg.teacher, backend="llama-cpp")
    if args.n_parallel:
        teacher_cfg = replace(teacher_cfg, n_parallel=args.n_parallel)
    leaf = load_leaf(ROOT / cfg.taxonomy.root, args.leaf)
    if leaf.kind == "knowledge":
        sys.exit("pick a skills leaf: knowledge leaves need their documents chunked first")
    record = seeds.leaf_record(leaf, cfg.seeds, None)
    planned = generation.estimate(record, cfg.generate, teacher_cfg, cfg.seed)
    if args.mix:
        step = max(1, len(planned) // args.requests)
        requests = planned[::step][: args.requests]
    else:
        longest = max(r.max_tokens for r in planned)
        requests = [r for r in planned if r.max_tokens == longest][: args.requests]
    gguf = resolve_gguf(teacher_cfg.gguf)
    kinds = sorted({r.max_tokens for r in requests})
    print(f"leaf {args.leaf}: {len(requests)} requests, max_tokens {kinds}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # (a) raw llama.cpp, one request at a time.
    llm = open_llama(
        gguf, n_ctx=teacher_cfg.n_ctx, n_threads=teacher_cfg.n_threads, n_batch=512, seed=0
    )
    raw_tokens, prompt_tokens = 0, 0
    start = time.perf_counter()
    for r in requests:
        llm.reset()
        out = llm.create_completion(
            r.prompt,
            max_tokens=r.max_tokens,
            temperature=teacher_cfg.temperature,
            top_p=teacher_cfg.top_p,
            repeat_penalty=teacher_cfg.repeat_penalty,
            seed=r.seed,
            stop=list(r.stop) or None,
        )
        raw_tokens += out["usage"]["completion_tokens"]
        prompt_tokens += out["usage"]["prompt_tokens"]
    raw_s = time.perf_counter() - start
    llm.close()

    # (b) labmake's batched teacher on the same requests.
    teacher = open_teacher(teacher_cfg)
    start = time.perf_counter()
    completions = complete_all(teacher, requests, "benchmark")
    ours_s = time.perf_counter() - start
    teacher.close()
    ours_tokens = sum(c.completion_tokens for c in completions)

    a, b = raw_tokens / raw_s, ours_tokens / ours_s
    print(f"prompt tokens per request (mean): {prompt_tokens / len(requests):.0f}")
    print(f"(a) raw llama_cpp, one at a time: {raw_tokens} tokens in {raw_s:.1f} s = {a:.1f} tok/s")
    print(
        f"(b) labmake complete_all, n_parallel {teacher_cfg.n_parallel}: "
        f"{ours_tokens} tokens in {ours_s:.1f} s = {b:.1f} tok/s"
    )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"b/a = {b / a:.2f} (target >= 1.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
