"""Stage 4 (shared): every leaf's seeds and accepted samples -> the phase datasets.

- build/data/knowledge.jsonl: knowledge leaves (phase 1), each sample in every form that
  ``mix.knowledge_forms`` lists: ``closed_book`` (the question alone), ``document`` (LAB's
  phase-1 form: its chunk, then the question) and ``distractors`` (LAB's phase-2 form: the
  right chunk among ``mix.distractors`` other chunks of the leaf, in a seeded order).
- build/data/skills.jsonl:    skill leaves (phase 2). Replay of phase 1 happens in ONE place,
  the train stage (``train.phases[].replay_ratio``), not here.
- build/data/eval.jsonl:      per leaf, ``mix.eval_seeds_per_leaf`` seed Q&A and up to
  ``mix.eval_generated_per_leaf`` accepted samples (at most ``mix.eval_generated_max_share``
  of the leaf's), held out BEFORE the recipe draw, so no
  form, no upsampled repeat, and no generated sample whose question (in its context, for
  skills) is a near-duplicate of a held-out one (``filter.near_duplicate``) is trained on.
``mix.recipes`` (first matching glob wins) set how many generated samples each leaf gives:
fewer are drawn without replacement; more only with ``upsample: true`` (with replacement).
All in the chat ``messages`` form that ``datasets.load_dataset("json", ...)`` reads. The mix
always covers every leaf of the taxonomy, not only the ones an edit touched.
"""

from __future__ import annotations

import logging
import math
import random
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import MixConfig, MixRecipe, NearDuplicateConfig
from labmake.core.hashing import derive_seed
from labmake.core.text import similarity, tokens
from labmake.sdg.filters import to_messages

log = logging.getLogger(__name__)


def split_seeds(seeds: dict[str, Any], cfg: MixConfig, seed: int) -> tuple[list, list]:
    """(held-out, training) seed examples, chosen by a stable hash of each question: the
    larger of ``mix.eval_seeds_per_leaf`` and ``mix.eval_seeds_share`` of the leaf's seeds."""
    ranked = sorted(
        seeds["seed_examples"], key=lambda s: derive_seed(seed, seeds["leaf"], s["question"])
    )
    held = max(cfg.eval_seeds_per_leaf, math.floor(cfg.eval_seeds_share * len(ranked)))
    return ranked[:held], ranked[held:]


def _record(seeds: dict[str, Any], example: dict[str, Any], source: str) -> dict[str, Any]:
    # Knowledge seeds are learnt closed-book: the question alone must recall the document's facts.
    context = example.get("context") if seeds["kind"] == "skill" else None
    record = {
        "leaf": seeds["leaf"],
        "kind": seeds["kind"],
        "source": source,
        "form": "closed_book" if seeds["kind"] == "knowledge" else "skill",
        "question": example["question"],
        "answer": example["answer"],
        "context": context,
        "messages": to_messages(example["question"], example["answer"], context),
    }
    if example.get("chunk_index") is not None:
        record["chunk_index"] = example["chunk_index"]
    return record


def _prompt_tokens(seeds: dict[str, Any], example: dict[str, Any]) -> list[str]:
    """The question as evaluation asks it: alone for knowledge (closed-book), after its context
    for skills. Comparing questions alone would call every grounded sample a duplicate: they
    share one instruction ("List the action items...") and differ in their context."""
    context = example.get("context") if seeds["kind"] == "skill" else None
    return tokens(" ".join(part for part in (context, example["question"]) if part))


def split_generated(
    seeds: dict[str, Any],
    accepted: list[dict[str, Any]],
    seed_split: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cfg: MixConfig,
    near_duplicate: NearDuplicateConfig,
    seed: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """(held-out, training, dropped) accepted samples of one leaf.

    Candidates are ranked by a stable hash of each sample, so a sample added elsewhere never
    reshuffles the choice. A candidate is passed over when a training seed asks the same
    question (it would be trained on) or when holding it out would leave the leaf no generated
    training sample. Training samples whose question is a near-duplicate of any held-out one
    (seed or generated) are dropped: training on them would leak the held-out answer.
    """
    held_seeds, train_seeds = seed_split
    prepare, similar = similarity(near_duplicate)

    def near(form: Any, others: list[Any]) -> bool:
        return any(similar(form, other) >= near_duplicate.threshold for other in others)

    forms = [prepare(_prompt_tokens(seeds, s)) for s in accepted]
    held_seed_forms = [prepare(_prompt_tokens(seeds, s)) for s in held_seeds]
    remaining = {i for i, form in enumerate(forms) if not near(form, held_seed_forms)}
    train_seed_forms = [prepare(_prompt_tokens(seeds, s)) for s in train_seeds]
    order = sorted(
        range(len(accepted)),
        key=lambda i: derive_seed(
            seed, seeds["leaf"], "generated", accepted[i]["question"], accepted[i]["answer"]
        ),
    )
    wanted = min(
        cfg.eval_generated_per_leaf, math.floor(cfg.eval_generated_max_share * len(accepted))
    )
    held: list[int] = []
    for i in order:
        if len(held) >= wanted:
            break
        if i not in remaining or near(forms[i], train_seed_forms):
            continue
        leaked = {j for j in remaining - {i} if near(forms[j], [forms[i]])}
        if len(remaining) - 1 - len(leaked) < 1:
            continue  # keep at least one generated training sample
        held.append(i)
        remaining -= leaked | {i}
    if len(held) < wanted:
        log.warning(
            "%s: held out %d of the %d generated samples asked (mix.eval_generated_per_leaf, "
            "at most mix.eval_generated_max_share of %d): the leaf keeps at least one generated "
            "training sample and never holds out a question it trains on",
            seeds["leaf"],
            len(held),
            wanted,
            len(accepted),
        )
    held_out = [accepted[i] for i in sorted(held)]
    training = [accepted[i] for i in sorted(remaining)]
    return held_out, training, len(accepted) - len(held_out) - len(training)


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
    leaves: list[tuple[dict[str, Any], list[dict[str, Any]]]],
    cfg: MixConfig,
    seed: int,
    near_duplicate: NearDuplicateConfig | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    datasets: dict[str, list[dict[str, Any]]] = {"knowledge": [], "skills": [], "eval": []}
    per_leaf = {}
    for seeds, accepted in sorted(leaves, key=lambda pair: pair[0]["leaf"]):
        leaf = seeds["leaf"]
        held_out, training = split_seeds(seeds, cfg, seed)
        held_generated, train_generated, dropped = split_generated(
            seeds,
            accepted,
            (held_out, training),
            cfg,
            near_duplicate or NearDuplicateConfig(),
            seed,
        )
        target = "knowledge" if seeds["kind"] == "knowledge" else "skills"
        recipe = recipe_for(leaf, cfg.recipes)
        rng = random.Random(derive_seed(seed, "mix", leaf))
        drawn, repeats = draw(train_generated, recipe, rng)
        if target == "knowledge":
            records = [r for s in drawn for r in knowledge_forms(s, seeds["chunks"], cfg, rng)]
        else:
            records = [{**s, "form": "skill"} for s in drawn]
        datasets["eval"].extend(_record(seeds, s, "seed") for s in held_out)
        datasets["eval"].extend(_record(seeds, s, "generated") for s in held_generated)
        datasets[target].extend(_record(seeds, s, "seed") for s in training)
        datasets[target].extend(records)
        per_leaf[leaf] = {
            "dataset": target,
            "recipe": recipe.leaves if recipe else None,
            "seed_train": len(training),
            "generated_available": len(accepted),
            "generated_dropped_near_eval": dropped,
            "generated_drawn": len(drawn),
            "upsampled_repeats": repeats,
            "generated_records": len(records),
            "eval_seed": len(held_out),
            "eval_generated": len(held_generated),
            "eval": len(held_out) + len(held_generated),
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
    near_duplicate: NearDuplicateConfig | None = None,
) -> None:
    leaves = [
        (artifacts.read_json(s), artifacts.read_jsonl(f))
        for s, f in zip(seeds_paths, filtered_paths, strict=True)
    ]
    datasets, stats = mix(leaves, cfg, seed, near_duplicate)
    for name, path in outputs.items():
        artifacts.write_jsonl(path, datasets[name])
    artifacts.write_json(stats_out, stats)
