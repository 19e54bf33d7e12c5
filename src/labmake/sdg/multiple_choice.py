"""Knowledge multiple choice (MMLU-branch style) written by the teacher from a leaf's documents.

Per knowledge leaf (rule ``generate_multiple_choice``: build/seeds/{leaf}.json ->
build/mc/{leaf}.jsonl), the shipped ``multiple_choice`` SDG pipeline asks the teacher, per
document chunk, for one question with its right answer, and then for wrong options of the same
form; rules and a judge keep questions whose right answer the chunk supports, with distinct
options that do not restate it. A question left with fewer than ``options - 1`` wrong options
is filled with the leaf's other questions' right answers (a deterministic, seeded draw; each
option records where it came from); one that still has none is dropped.

Rule ``multiple_choice`` puts every knowledge leaf's kept items in
build/data/multiple_choice.jsonl, sorted, with provenance per item. Evaluation scores models on
it by option likelihood (``labmake.evaluation.multiple_choice``); it is never an input of mix or
train, so regenerating it never retrains.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import GenerateConfig, MultipleChoiceConfig, TeacherConfig
from labmake.core.hashing import derive_seed
from labmake.sdg import Pipeline, check, load
from labmake.sdg.blocks.base import Counts
from labmake.sdg.blocks.options import same_option
from labmake.sdg.generation import cached_teacher, estimate, record, run_with_teacher
from labmake.taxonomy.schema import KNOWLEDGE
from labmake.teacher.cache import RequestCache
from labmake.teacher.protocol import Request, Teacher

log = logging.getLogger(__name__)

PIPELINE = "multiple_choice"
# Where an option came from: the right answer, the teacher's wrong options, or (LEAF_SOURCE +
# record id) another question's right answer of the same leaf.
ANSWER_SOURCE = "answer"
TEACHER_SOURCE = "teacher"
LEAF_SOURCE = "leaf:"
# An item of build/data/multiple_choice.jsonl keeps these fields of its leaf's record.
ITEM_FIELDS = (
    "leaf",
    "id",
    "chunk_index",
    "chunk",
    "question",
    "options",
    "correct",
    "option_sources",
    "teacher",
    "pipeline",
    "pipeline_version",
    "seeds",
    "scores",
)


def counts(cfg: MultipleChoiceConfig) -> Counts:
    """The pipeline's count names resolve in params.yaml's evaluate section."""
    return ("evaluate", _EvaluateCounts(cfg))


class _EvaluateCounts:
    """The evaluate section as the pipeline sees it: ``multiple_choice.*`` counts only."""

    def __init__(self, cfg: MultipleChoiceConfig) -> None:
        self.multiple_choice = cfg


def pipeline(cfg: MultipleChoiceConfig) -> Pipeline:
    """The shipped multiple-choice pipeline, loaded and checked."""
    loaded = load(PIPELINE)
    check(loaded, counts=counts(cfg))
    return loaded


def fill_distractors(
    records: Sequence[dict[str, Any]], n_options: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(items with shuffled ``options``, ``correct`` and ``option_sources``; dropped records).

    ``records`` are one leaf's kept questions. Each takes up to ``n_options - 1`` of its
    teacher's wrong options, then, while short, other questions' right answers of the same
    leaf in a draw seeded by (seed, leaf, id), skipping any that says the same as an option it
    already has (:func:`~labmake.sdg.blocks.options.same_option`). A question with no wrong option at
    all is dropped (reason ``no_distractors``).
    """
    wanted = n_options - 1
    answers = sorted({(r["answer"], r["id"]) for r in records})
    items, dropped = [], []
    for rec in records:
        rng = random.Random(derive_seed(seed, PIPELINE, rec["leaf"], rec["id"]))
        options = [(rec["answer"], ANSWER_SOURCE)]
        options += [(d, TEACHER_SOURCE) for d in rec["distractors"][:wanted]]
        pool = [a for a in answers if a[1] != rec["id"]]
        rng.shuffle(pool)
        for answer, source in pool:
            if len(options) > wanted:
                break
            if not any(same_option(answer, o) for o, _ in options):
                options.append((answer, LEAF_SOURCE + source))
        if len(options) < 2:
            dropped.append(
                {
                    **rec,
                    "status": "rejected",
                    "rejected_by": "fill_distractors",
                    "reason": "no_distractors",
                }
            )
            continue
        rng.shuffle(options)
        items.append(
            {
                **rec,
                # One line each: a teacher's answer may wrap, which a choice list cannot show.
                "options": [" ".join(o.split()) for o, _ in options],
                "option_sources": [s for _, s in options],
                "correct": [s for _, s in options].index(ANSWER_SOURCE),
            }
        )
    return items, dropped


def generate_leaf(
    seeds: dict[str, Any],
    cfg: MultipleChoiceConfig,
    teacher_cfg: TeacherConfig,
    seed: int,
    teacher: Teacher,
    cache: RequestCache | None = None,
) -> list[dict[str, Any]]:
    """One record per question asked of the teacher: kept ones (with options) first.

    A skill leaf, or a knowledge leaf without chunks, gets none.
    """
    if seeds["kind"] != KNOWLEDGE or not seeds.get("chunks"):
        return []
    pipe = pipeline(cfg)
    result = run_with_teacher(
        pipe, seeds, GenerateConfig(), teacher_cfg, seed, teacher, cache, counts(cfg)
    )
    identity = teacher.identity
    kept = [record(seeds, pipe, r, identity, True) for r in result.kept]
    items, dropped = fill_distractors(kept, cfg.options, seed)
    rejected = [record(seeds, pipe, r, identity, False) for r in result.rejected]
    log.info(
        "%s: %d multiple-choice questions kept (%d teacher wrong options, %d filled from the "
        "leaf), %d rejected",
        seeds["leaf"],
        len(items),
        sum(s == TEACHER_SOURCE for i in items for s in i["option_sources"]),
        sum(s.startswith(LEAF_SOURCE) for i in items for s in i["option_sources"]),
        len(dropped) + len(rejected),
    )
    return items + dropped + rejected


def estimate_requests(
    seeds: dict[str, Any], cfg: MultipleChoiceConfig, teacher_cfg: TeacherConfig, seed: int
) -> list[Request]:
    """The teacher requests the leaf's multiple choice sends at most (none for a skill)."""
    if seeds["kind"] != KNOWLEDGE or not seeds.get("chunks"):
        return []
    return estimate(seeds, GenerateConfig(), teacher_cfg, seed, pipeline(cfg), counts(cfg))


def run(
    seeds_path: Path, out: Path, teacher_cfg: TeacherConfig, cfg: MultipleChoiceConfig, seed: int
) -> None:
    """build/seeds/{leaf}.json -> build/mc/{leaf}.jsonl."""
    seeds = artifacts.read_json(seeds_path)
    if seeds["kind"] != KNOWLEDGE or not seeds.get("chunks"):
        artifacts.write_jsonl(out, [])
        return
    pipeline(cfg)  # a broken pipeline fails before the teacher loads
    with cached_teacher(teacher_cfg) as (teacher, cache):
        records = generate_leaf(seeds, cfg, teacher_cfg, seed, teacher, cache)
    artifacts.write_jsonl(out, records)


def items_of(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation items among a leaf's records, in a stable order."""
    kept = [r for r in records if r["status"] == "kept"]
    items = [{k: r[k] for k in ITEM_FIELDS} for r in kept]
    return sorted(items, key=lambda i: (i["leaf"], i["chunk_index"], i["id"]))


def aggregate(leaf_files: Sequence[Path], out: Path) -> None:
    """Every knowledge leaf's kept items -> build/data/multiple_choice.jsonl (sorted)."""
    items = [item for path in leaf_files for item in items_of(artifacts.read_jsonl(path))]
    items.sort(key=lambda i: (i["leaf"], i["chunk_index"], i["id"]))
    log.info("%d multiple-choice items from %d knowledge leaves", len(items), len(leaf_files))
    artifacts.write_jsonl(out, items)
