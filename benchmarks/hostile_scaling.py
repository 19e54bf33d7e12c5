"""Time against input size for the two checks a hostile taxonomy could make slow.

1. Validation of one skill qna.yaml of N short seed examples (1k .. 32k, doubling): reading,
   YAML, yamllint, the schema (its uniqueness rule), labmake's limits. Sizes above the cap on
   examples per file (labmake.taxonomy.caps.MAX_SEED_EXAMPLES) are measured with the cap
   lifted, to show the algorithm; the last line times the real refusal of the largest file.
2. Chunking one knowledge document of 64 KiB .. 8 MiB (doubling; 8 MiB is the document cap)
   into chunks of seeds.chunk_tokens (200) sharing seeds.chunk_overlap_tokens (32), measured
   by `labmake plan`'s token estimate, or by the embedded model's tokenizer (--tokenizer gguf,
   as the seeds stage does).

Each line prints the size, the seconds, and the ratio to the previous size's seconds: linear
growth doubles the time with the size (ratio about 2; the quadratic code gave about 4).

    .venv/bin/python benchmarks/hostile_scaling.py [--max-examples 32000] [--max-doc-mib 8]
        [--tokenizer estimate|gguf]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from labmake.taxonomy import caps, check
from labmake.taxonomy.chunking import chunk_tokens
from labmake.taxonomy.limits import estimate_tokens

LEAF = "compositional_skills/scaling/examples"
WORDS = (
    "the river carries water from the hills to the sea and every season it changes its course "
    "while farmers plant wheat barley and rye along banks that flood in spring"
).split()


def skill_file(n: int) -> str:
    # As short as examples get, so that 32,000 fit under the 1 MiB cap on a qna.yaml.
    examples = "".join(f"- {{question: q{i:x}, answer: a}}\n" for i in range(n))
    return (
        "version: 3\ncreated_by: bench\ntask_description: Answer numbered questions.\n"
        f"seed_examples:\n{examples}"
    )


def document(n_bytes: int) -> str:
    rng = random.Random(n_bytes)
    out: list[str] = []
    size = 0
    while size < n_bytes:
        sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))) + ".\n"
        out.append(sentence)
        size += len(sentence)
    return "".join(out)[:n_bytes]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def bench_validation(max_examples: int) -> None:
    print("validation of one qna.yaml (seconds; ratio to the previous size)")
    previous = None
    cap = caps.MAX_SEED_EXAMPLES
    n = 1000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / LEAF).mkdir(parents=True)
        while n <= max_examples:
            (root / LEAF / "qna.yaml").write_text(skill_file(n), encoding="utf-8")
            # Measure the checks, not the refusal: lift the cap (the count before parsing, and
            # the exact one after).
            caps.MAX_SEED_EXAMPLES = max(cap, n)
            seconds, report = timed(lambda: check.check_leaf(root, LEAF, check.CheckMode()))
            errors = [f.message for f in report.findings if f.level == "error"]  # type: ignore[attr-defined]
            assert not errors, errors  # a valid file: every check ran
            ratio = f"x{seconds / previous:.2f}" if previous else ""
            note = "  (cap lifted)" if n > cap else ""
            kib = (root / LEAF / "qna.yaml").stat().st_size / 1024
            print(f"  {n:>6} examples {kib:>7.0f} KiB {seconds:7.2f} s {ratio:>6}{note}")
            previous, n = seconds, n * 2
        caps.MAX_SEED_EXAMPLES = cap
        largest = n // 2
        if largest > cap:
            seconds, report = timed(lambda: check.check_leaf(root, LEAF, check.CheckMode()))
            refused = [f.message for f in report.findings if f.level == "error"]  # type: ignore[attr-defined]
            print(f"  {largest} examples at the real cap ({cap:,}): refused in {seconds:.2f} s:")
            print(f"    {refused[0] if refused else 'NOT REFUSED'}")


def bench_chunking(max_mib: int, tokenizer: str) -> None:
    count: Callable[[str], int] = estimate_tokens
    if tokenizer == "gguf":
        from labmake.core.models import resolve_gguf
        from labmake.taxonomy.chunking import gguf_token_counter

        count = gguf_token_counter(resolve_gguf(None))
    print(f"chunking one document, 200-token chunks, 32 overlapping ({tokenizer} tokens)")
    previous = None
    n_bytes = 64 << 10
    while n_bytes <= max_mib << 20:
        text = document(n_bytes)
        seconds, chunks = timed(lambda text=text: chunk_tokens(text, count, 200, 32))
        ratio = f"x{seconds / previous:.2f}" if previous else ""
        size = f"{n_bytes >> 10} KiB" if n_bytes < 1 << 20 else f"{n_bytes >> 20} MiB"
        print(f"  {size:>8} {len(chunks):>7} chunks {seconds:7.2f} s {ratio:>6}")  # type: ignore[arg-type]
        previous, n_bytes = seconds, n_bytes * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=32000)
    parser.add_argument("--max-doc-mib", type=int, default=8)
    parser.add_argument("--tokenizer", choices=("estimate", "gguf"), default="estimate")
    args = parser.parse_args()
    bench_validation(args.max_examples)
    bench_chunking(args.max_doc_mib, args.tokenizer)


if __name__ == "__main__":
    main()
