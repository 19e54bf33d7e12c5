"""The ``rows`` block: a pipeline's source, rows per chunk or per leaf with few-shot examples."""

from __future__ import annotations

import random
from typing import Any

from labmake.core.hashing import derive_seed
from labmake.sdg.blocks.base import Block, Context, Counts, PipelineError, Row, resolve_count


class RowsBlock(Block):
    """The source: ``count`` rows per chunk (``per: chunk``) or per leaf, each with examples.

    ``require: [context]`` shows only seed examples with those fields (a leaf where some
    examples have a context and some not still shows contexts to a context prompt). In a later
    round (``ctx.window``) the sample indices go on from where the last round stopped, so every
    row's id, seed and few-shot draw is new, and the same in every run.
    """

    type = "rows"
    allowed = frozenset({"per", "count", "examples", "require"})
    required = frozenset({"per", "count"})

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        if spec["per"] not in ("chunk", "leaf"):
            raise PipelineError(f"{where}: per must be chunk or leaf, not {spec['per']!r}")
        self.examples = spec.get("examples", "flat")
        if self.examples not in ("flat", "by_context"):
            raise PipelineError(f"{where}: examples must be flat or by_context")

    def produces(self) -> set[str]:
        return {"examples", "sample", "chunk", "chunk_index"}

    def placeholders(self) -> dict[str, Any]:
        example = {"question": "<q>", "answer": "<a>", "context": "<ctx>"}
        values: dict[str, Any] = {"sample": 0}
        if self.examples == "by_context":
            values["examples"] = [{"context": "<ctx>", "pairs": [example]}]
        else:
            values["examples"] = [example]
        values.update(chunk="<chunk>", chunk_index=0)
        return values

    def counts(self, counts: Counts | None) -> None:
        self.count = resolve_count(self.spec["count"], counts, self.where)

    def rows_per_sample(self, ctx: Context) -> int:
        """Rows one sample index makes: one per chunk (``per: chunk``) or one per leaf."""
        return max(1, len(ctx.seeds.get("chunks") or [])) if self.spec["per"] == "chunk" else 1

    def _seed_examples(self, ctx: Context) -> list[dict[str, Any]]:
        needed = self.spec.get("require") or []
        examples = [e for e in ctx.seeds["seed_examples"] if all(e.get(f) for f in needed)]
        return examples or list(ctx.seeds["seed_examples"])

    def _examples(self, ctx: Context, rng: random.Random) -> list[Any]:
        wanted = ctx.gen.examples_per_prompt
        if self.examples == "by_context":
            groups: dict[str, list[dict[str, Any]]] = {}
            for ex in self._seed_examples(ctx):
                groups.setdefault(ex["context"], []).append(ex)
            shuffled = [{"context": c, "pairs": p} for c, p in groups.items()]
            rng.shuffle(shuffled)
            # examples_per_prompt counts Q&A pairs; whole contexts are shown with their pairs.
            chosen, pairs = [], 0
            for group in shuffled:
                if pairs >= wanted:
                    break
                chosen.append(group)
                pairs += len(group["pairs"])
            return chosen
        examples = self._seed_examples(ctx)
        rng.shuffle(examples)
        return examples[:wanted]

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        chunks = ctx.seeds.get("chunks") or []
        first, count = ctx.window or (0, self.count)
        samples = range(first, first + count)
        if self.spec["per"] == "chunk":
            if not chunks:
                raise PipelineError(
                    f"{ctx.leaf}: a per-chunk pipeline needs document chunks and this leaf has "
                    "none; give the leaf a document or set generate.pipeline: simple"
                )
            ids = [(f"c{c}.s{s}", c, s) for c in range(len(chunks)) for s in samples]
        else:
            # Per leaf, a leaf with a document still grounds each row on one chunk, in turn.
            ids = [(f"s{s}", s % len(chunks) if chunks else None, s) for s in samples]
        out: list[Row] = []
        for row_id, chunk_index, sample in ids:
            rng = random.Random(derive_seed(ctx.seed, ctx.leaf, self.name, row_id))
            out.append(
                {
                    "_id": row_id,
                    "_seeds": {},
                    "_templates": {},
                    "_scores": {},
                    "chunk": chunks[chunk_index] if chunk_index is not None else None,
                    "chunk_index": chunk_index,
                    "sample": sample,
                    "examples": self._examples(ctx, rng),
                }
            )
        return out, []
