"""Document augmentation (LAB, sdg_hub): a knowledge leaf's chunks rewritten before Q/A.

With ``generate.knowledge.augment.kinds`` set, the generate stage first runs the ``augment``
pipeline (``labmake/sdg/pipelines/augment.yaml``) on a knowledge leaf: per document chunk, kind
(summary, key_facts, rephrase) and ``per_chunk``, one teacher request for a rewrite framed in
``<rewrite>`` tags, then rules against its chunk (content-word overlap, length), a faithfulness
judge and exact dedup. The rewrites it keeps become extra chunks of the leaf (the seeds record's
``augmented`` list, in memory only): the Q/A pipeline's rows block iterates them after the
document's, exactly as it does those, so their samples are judged and filtered like any other.
A sample from a rewrite records ``chunk_source: {index, kind}`` (``chunk_index`` is its document
chunk's too, ``chunk`` the rewrite). Augmentation runs once per leaf, before the first round:
later rounds read the same rewrites. Every rewrite, kept or rejected (with the block and the
reason), is a record of ``build/generated/{leaf}.augmented.jsonl``. Off (``kinds: []``), on a
leaf without chunks or with a pipeline that does not make rows per chunk (``generate.pipeline:
simple``), nothing changes: no request, the same samples, an empty rewrites file.
"""

from __future__ import annotations

from typing import Any

from labmake.core.config import GenerateConfig
from labmake.sdg.blocks.base import PipelineError, Row
from labmake.sdg.pipeline import Pipeline, check, load

PIPELINE = "augment"
# Columns the rest of labmake reads from the augment pipeline's rows (a pipelines_dir override
# must keep them).
COLUMNS = frozenset({"rewrite", "augment_kind", "chunk_index"})


def enabled(seeds: dict[str, Any], gen: GenerateConfig, leaf_pipeline: Pipeline) -> bool:
    """Whether the leaf's chunks are rewritten: augmentation on, a knowledge leaf with chunks,
    and a pipeline (the leaf's) that makes rows per chunk: only those read rewrites."""
    per_chunk = leaf_pipeline.blocks[0].spec.get("per") == "chunk"
    knowledge = seeds["kind"] == "knowledge" and bool(seeds.get("chunks"))
    return bool(gen.knowledge.augment.kinds) and knowledge and per_chunk


def pipeline(gen: GenerateConfig) -> Pipeline:
    """The augment pipeline, loaded and checked (PipelineError names the file and the fix)."""
    loaded = load(PIPELINE, gen.pipelines_dir)
    check(loaded, gen)
    missing = COLUMNS - set(loaded.outputs)
    if missing:
        raise PipelineError(
            f"{loaded.source}: outputs must include {sorted(missing)}: the Q/A pipeline reads "
            "each kept rewrite as a chunk"
        )
    return loaded


def with_rewrites(seeds: dict[str, Any], kept: list[Row]) -> dict[str, Any]:
    """``seeds`` with ``kept`` rewrites as extra chunks, in the augment pipeline's order."""
    if not kept:
        return seeds
    augmented = [
        {
            "id": row["_id"],
            "chunk": row["rewrite"],
            "index": row["chunk_index"],
            "kind": row["augment_kind"],
        }
        for row in kept
    ]
    return {**seeds, "augmented": augmented}
