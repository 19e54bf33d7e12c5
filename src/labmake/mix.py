"""Stage 4 (shared): every leaf's seeds and accepted samples -> the phase datasets.

- build/data/knowledge.jsonl: knowledge leaves (phase 1)
- build/data/skills.jsonl:    skill leaves (phase 2; replay of phase 1 is the train phase's job)
- build/data/eval.jsonl:      held-out seed Q&A per leaf, never trained on
All in the chat ``messages`` form that ``datasets.load_dataset("json", ...)`` reads. The mix
always covers every leaf of the taxonomy, not only the ones an edit touched.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from . import io
from .config import MixConfig
from .filters import to_messages
from .teacher import derive_seed


def split_seeds(seeds: dict[str, Any], cfg: MixConfig, seed: int) -> tuple[list, list]:
    """(held-out, training) seed examples, chosen by a stable hash of each question."""
    ranked = sorted(
        seeds["seed_examples"], key=lambda s: derive_seed(seed, seeds["leaf"], s["question"])
    )
    return ranked[: cfg.eval_seeds_per_leaf], ranked[cfg.eval_seeds_per_leaf :]


def _record(seeds: dict[str, Any], example: dict[str, Any], source: str) -> dict[str, Any]:
    # Knowledge is learnt closed-book: the question alone must recall the document's facts.
    context = example["context"] if seeds["kind"] == "skill" else None
    return {
        "leaf": seeds["leaf"],
        "kind": seeds["kind"],
        "source": source,
        "question": example["question"],
        "answer": example["answer"],
        "context": context,
        "messages": to_messages(example["question"], example["answer"], context),
    }


def mix(
    leaves: list[tuple[dict[str, Any], list[dict[str, Any]]]], cfg: MixConfig, seed: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    datasets: dict[str, list[dict[str, Any]]] = {"knowledge": [], "skills": [], "eval": []}
    per_leaf = {}
    for seeds, accepted in sorted(leaves, key=lambda pair: pair[0]["leaf"]):
        held_out, training = split_seeds(seeds, cfg, seed)
        target = "knowledge" if seeds["kind"] == "knowledge" else "skills"
        datasets["eval"].extend(_record(seeds, s, "seed") for s in held_out)
        datasets[target].extend(_record(seeds, s, "seed") for s in training)
        datasets[target].extend(accepted)
        per_leaf[seeds["leaf"]] = {
            "dataset": target,
            "seed_train": len(training),
            "generated": len(accepted),
            "eval": len(held_out),
        }
    for name, records in datasets.items():
        random.Random(derive_seed(seed, "mix", name)).shuffle(records)
    stats = {"leaves": per_leaf, "sizes": {k: len(v) for k, v in sorted(datasets.items())}}
    return datasets, stats


def run(
    seeds_paths: list[Path],
    filtered_paths: list[Path],
    cfg: MixConfig,
    seed: int,
    outputs: dict[str, Path],
    stats_out: Path,
) -> None:
    leaves = [
        (io.read_json(s), io.read_jsonl(f))
        for s, f in zip(seeds_paths, filtered_paths, strict=True)
    ]
    datasets, stats = mix(leaves, cfg, seed)
    for name, path in outputs.items():
        io.write_jsonl(path, datasets[name])
    io.write_json(stats_out, stats)
