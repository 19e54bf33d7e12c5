"""Trained tokens per second: a plain transformers loop against labmake's trainer.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_throughput.py [--steps 3] [--base DIR]

Both train the same LoRA adapter (the default params.yaml's: r 8 on attention and MLP) of the
default student (the embedded Gemma 3 270M) on the same fixed slice of chat samples, in the
same order, batch 4, fp32 on the CPU:

(a) the usual baseline: every batch padded to max_seq_len (256), the model's own loss, so
    the output layer computes logits at every position of every row (262k vocabulary);
(b) labmake's trainer (labmake.training.loop.train): each batch packed into one row without
    padding, logits only where the loss is taken.

"Trained tokens" are the samples' real tokens (padding excluded), the same for both, so the
ratio b/a is the ratio of the two step times. The data: build/data/{knowledge,skills}.jsonl
when a build made them, else the example taxonomy's seed Q&A pairs; the first --samples
records in a fixed order. Each side runs one untimed warm-up step first.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import torch  # noqa: E402
import yaml  # noqa: E402

from labmake.core import artifacts, models, paths  # noqa: E402
from labmake.core.config import LoraConfig, PhaseConfig  # noqa: E402
from labmake.training import student  # noqa: E402
from labmake.training.data import IGNORE_INDEX, collate, plan_steps, prepare_samples  # noqa: E402
from labmake.training.loop import MAX_GRAD_NORM, StepStats, train  # noqa: E402
from labmake.training.weights import add_lora, load_tuned  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LORA = LoraConfig(
    r=8,
    alpha=16,
    dropout=0.0,
    target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
)


def records(limit: int) -> tuple[list[dict], str]:
    """A fixed slice of chat records, and where it came from."""
    built = [ROOT / "build/data/knowledge.jsonl", ROOT / "build/data/skills.jsonl"]
    if all(p.is_file() for p in built):
        out = [r for p in built for r in artifacts.read_jsonl(p)]
        return out[:limit], "build/data/{knowledge,skills}.jsonl"
    out = []
    for qna in sorted((ROOT / "taxonomy").rglob("qna.yaml")):
        doc = yaml.safe_load(qna.read_text(encoding="utf-8"))
        for example in doc.get("seed_examples", []):
            pairs = example.get("questions_and_answers") or [example]
            for pair in pairs:
                question = (example.get("context", "") + "\n\n" + pair["question"]).strip()
                out.append(
                    {
                        "messages": [
                            {"role": "user", "content": question},
                            {"role": "assistant", "content": pair["answer"].strip()},
                        ]
                    }
                )
    return out[:limit], "taxonomy seed examples"


def default_base(work: Path) -> Path:
    """build/base if it holds the embedded student, else a conversion (cached after once)."""
    built = ROOT / "build/base"
    marker = built / paths.BASE_MARKER
    embedded = models.embedded_gguf()
    if marker.is_file() and artifacts.read_json(marker).get(
        "source_gguf_sha256"
    ) == artifacts.sha256_file(embedded):
        return built
    student.convert_gguf_to_hf(None, work / "base")
    return work / "base"


def fresh_model(base: Path):
    model, tokenizer = load_tuned(base, [])
    torch.manual_seed(0)
    return add_lora(model, LORA), tokenizer


def padded_batch(samples, pad_id: int, width: int) -> dict[str, torch.Tensor]:
    return collate(samples, pad_id, width=width)


def baseline(base: Path, samples, plan, phase: PhaseConfig, width: int) -> float:
    """(a): seconds for the timed steps of a plain padded, full-logits loop."""
    model, tokenizer = fresh_model(base)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=phase.learning_rate)
    elapsed = 0.0
    for step, micro in enumerate(plan):
        t0 = time.perf_counter()
        for idx in micro:
            batch = padded_batch([samples[i] for i in idx], tokenizer.pad_token_id, width)
            loss = model(**batch).loss  # HF: logits for all positions, mean over labels
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step > 0:  # step 0 warms up
            elapsed += time.perf_counter() - t0
        print(
            f"  (a) step {step}: {time.perf_counter() - t0:.2f} s, loss {float(loss.detach()):.3f}"
        )
    return elapsed


def labmake_trainer(base: Path, samples, plan, phase: PhaseConfig) -> float:
    """(b): seconds for the timed steps of labmake's trainer (packing + selected logits)."""
    model, tokenizer = fresh_model(base)
    train(model, samples, plan[:1], phase, pad_id=tokenizer.pad_token_id)  # warm-up
    times = []

    def on_step(step: int, stats: StepStats) -> None:
        times.append(time.perf_counter())
        print(f"  (b) step {step}: {times[-1] - times[-2]:.2f} s, loss {stats.loss:.3f}")

    times.append(time.perf_counter())
    train(model, samples, plan[1:], phase, pad_id=tokenizer.pad_token_id, on_step=on_step)
    return times[-1] - times[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per side")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--base", type=Path, default=None, help="a base folder (default: embedded)")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))

    with tempfile.TemporaryDirectory(prefix="labmake-bench-") as work:
        base = args.base or default_base(Path(work))
        data, source = records(args.samples)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        samples = prepare_samples(tokenizer, data, args.max_seq_len)
        phase = PhaseConfig(
            name="bench",
            dataset="knowledge",
            max_steps=args.steps + 1,
            learning_rate=2e-4,
            batch_size=args.batch_size,
            lora=LORA,
        )
        plan = plan_steps(len(samples), phase, random.Random(0))
        timed = [i for step in plan[1:] for micro in step for i in micro]
        tokens = sum(len(samples[i].input_ids) for i in timed)
        loss_tokens = sum(sum(lab != IGNORE_INDEX for lab in samples[i].labels[1:]) for i in timed)
        print(
            f"student: {base}\ndata: {len(samples)} samples from {source}; timed: "
            f"{args.steps} steps x {args.batch_size} samples = {tokens} tokens "
            f"({loss_tokens} with loss), max_seq_len {args.max_seq_len}, "
            f"{torch.get_num_threads()} threads"
        )
        a = baseline(base, samples, plan, phase, args.max_seq_len)
        b = labmake_trainer(base, samples, plan, phase)
    print(
        f"(a) plain transformers, padded to {args.max_seq_len}, full logits: {tokens / a:.1f} tok/s"
    )
    print(f"(b) labmake trainer, packed, logits at loss positions: {tokens / b:.1f} tok/s")
    print(f"ratio b/a: {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
