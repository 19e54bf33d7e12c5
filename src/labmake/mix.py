"""Stage 4 (shared): every leaf's seeds and accepted samples -> the phase datasets.

- build/data/knowledge.jsonl: knowledge leaves (phase 1), each sample in every form that
  ``mix.knowledge_forms`` lists: ``closed_book`` (the question alone), ``document`` (LAB's
  phase-1 form: its chunk, then the question) and ``distractors`` (LAB's phase-2 form: the
  right chunk among ``mix.distractors`` other chunks of the leaf, in a seeded order).
- build/data/skills.jsonl:    skill leaves (phase 2). Replay of phase 1 happens in ONE place,
  the train stage (``train.phases[].replay_ratio``), not here.
- build/data/eval.jsonl:      held-out seed Q&A per leaf, never trained on.
``mix.recipes`` (first matching glob wins) set how many generated samples each leaf gives:
fewer are drawn without replacement; more only with ``upsample: true`` (with replacement).
All in the chat ``messages`` form that ``datasets.load_dataset("json", ...)`` reads. The mix
always covers every leaf of the taxonomy, not only the ones an edit touched.
"""

from __future__ import annotations

import random
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from . import io
from .config import MixConfig, MixRecipe
from .filters import to_messages
from .teacher import derive_seed


def split_seeds(seeds: dict[str, Any], cfg: MixConfig, seed: int) -> tuple[list, list]:
    """(held-out, training) seed examples, chosen by a stable hash of each question."""
    ranked = sorted(
        seeds["seed_examples"], key=lambda s: derive_seed(seed, seeds["leaf"], s["question"])
    )
    return ranked[: cfg.eval_seeds_per_leaf], ranked[cfg.eval_seeds_per_leaf :]


def _record(seeds: dict[str, Any], example: dict[str, Any], source: str) -> dict[str, Any]:
    # Knowledge seeds are learnt closed-book: the question alone must recall the document's facts.
    context = example["context"] if seeds["kind"] == "skill" else None
    return {
        "leaf": seeds["leaf"],
        "kind": seeds["kind"],
        "source": source,
        "form": "closed_book" if seeds["kind"] == "knowledge" else "skill",
        "question": example["question"],
        "answer": example["answer"],
        "context": context,
        "messages": to_messages(example["question"], example["answer"], context),
    }


def recipe_for(leaf: str, recipes: tuple[MixRecipe, ...]) -> MixRecipe | None:
    return next((r for r in recipes if fnmatchcase(leaf, r.leaves)), None)


def draw(
    samples: list[dict[str, Any]], recipe: MixRecipe | None, rng: random.Random
) -> tuple[list[dict[str, Any]], int]:
    """(the leaf's samples per its recipe, how many of them are repeats drawn by upsampling)."""
    if recipe is None or recipe.size is None or recipe.size == len(samples):
        return list(samples), 0
    if recipe.size < len(samples):
        picked = sorted(rng.sample(range(len(samples)), recipe.size))
        return [samples[i] for i in picked], 0
    if not recipe.upsample or not samples:
        return list(samples), 0
    extra = [rng.choice(samples) for _ in range(recipe.size - len(samples))]
    return list(samples) + extra, len(extra)


def knowledge_forms(
    sample: dict[str, Any], chunks: list[str], cfg: MixConfig, rng: random.Random
) -> list[dict[str, Any]]:
    """One record per form in ``mix.knowledge_forms`` (document forms need the sample's chunk)."""
    question, answer, chunk = sample["question"], sample["answer"], sample.get("chunk")
    out = []
    for form in cfg.knowledge_forms:
        if form == "closed_book":
            user = question
        elif chunk is None:
            continue  # a sample without a chunk has no document form
        elif form == "document":
            user = f"{chunk}\n\n{question}"
        else:
            others = [c for i, c in enumerate(chunks) if i != sample.get("chunk_index")]
            documents = [chunk, *rng.sample(others, min(cfg.distractors, len(others)))]
            rng.shuffle(documents)
            shown = "\n\n".join(f"Document {i}:\n{d}" for i, d in enumerate(documents, 1))
            user = f"{shown}\n\n{question}"
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        out.append({**sample, "form": form, "messages": messages})
    return out


def mix(
    leaves: list[tuple[dict[str, Any], list[dict[str, Any]]]], cfg: MixConfig, seed: int
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    datasets: dict[str, list[dict[str, Any]]] = {"knowledge": [], "skills": [], "eval": []}
    per_leaf = {}
    for seeds, accepted in sorted(leaves, key=lambda pair: pair[0]["leaf"]):
        leaf = seeds["leaf"]
        held_out, training = split_seeds(seeds, cfg, seed)
        target = "knowledge" if seeds["kind"] == "knowledge" else "skills"
        recipe = recipe_for(leaf, cfg.recipes)
        rng = random.Random(derive_seed(seed, "mix", leaf))
        drawn, repeats = draw(accepted, recipe, rng)
        if target == "knowledge":
            records = [r for s in drawn for r in knowledge_forms(s, seeds["chunks"], cfg, rng)]
        else:
            records = [{**s, "form": "skill"} for s in drawn]
        datasets["eval"].extend(_record(seeds, s, "seed") for s in held_out)
        datasets[target].extend(_record(seeds, s, "seed") for s in training)
        datasets[target].extend(records)
        per_leaf[leaf] = {
            "dataset": target,
            "recipe": recipe.leaves if recipe else None,
            "seed_train": len(training),
            "generated_available": len(accepted),
            "generated_drawn": len(drawn),
            "upsampled_repeats": repeats,
            "generated_records": len(records),
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
