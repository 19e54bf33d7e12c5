"""The ``rows`` block: a pipeline's source, rows per chunk or per leaf with few-shot examples."""

from __future__ import annotations

import random
from typing import Any

from labmake.core.hashing import derive_seed
from labmake.sdg.blocks.base import (
    Block,
    Context,
    Counts,
    PipelineError,
    Row,
    resolve_count,
    resolve_names,
)


class RowsBlock(Block):
    """The source: ``count`` rows per chunk (``per: chunk``) or per leaf, each with examples.

    ``require: [context]`` shows only seed examples with those fields (a leaf where some
    examples have a context and some not still shows contexts to a context prompt). In a later
    round (``ctx.window``) the sample indices go on from where the last round stopped, so every
    row's id, seed and few-shot draw is new, and the same in every run.

    Per chunk, the leaf's kept rewrites (``seeds["augmented"]``: :mod:`labmake.sdg.augment`) are
    chunks too, after the document's, so Q/A generation reads them exactly as it reads the
    document; their rows carry ``_chunk_source`` (the document chunk's index and the rewrite's
    kind) and their ``chunk_index`` is the document chunk's. ``kinds: NAME`` (a list in params,
    per chunk) makes ``count`` rows per document chunk and kind instead, the kind in
    ``augment_kind``: the rewrite requests themselves.
    """

    type = "rows"
    allowed = frozenset({"per", "count", "examples", "require", "kinds"})
    required = frozenset({"per", "count"})

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        if spec["per"] not in ("chunk", "leaf"):
            raise PipelineError(f"{where}: per must be chunk or leaf, not {spec['per']!r}")
        if "kinds" in spec and spec["per"] != "chunk":
            raise PipelineError(f"{where}: kinds needs per: chunk")
        self.examples = spec.get("examples", "flat")
        if self.examples not in ("flat", "by_context"):
            raise PipelineError(f"{where}: examples must be flat or by_context")
        self.kinds: tuple[str, ...] | None = None

    def produces(self) -> set[str]:
        kinds = {"augment_kind"} if "kinds" in self.spec else set()
        return {"examples", "sample", "chunk", "chunk_index"} | kinds

    def placeholders(self) -> dict[str, Any]:
        example = {"question": "<q>", "answer": "<a>", "context": "<ctx>"}
        values: dict[str, Any] = {"sample": 0}
        if self.examples == "by_context":
            values["examples"] = [{"context": "<ctx>", "pairs": [example]}]
        else:
            values["examples"] = [example]
        values.update(chunk="<chunk>", chunk_index=0)
        if "kinds" in self.spec:
            values["augment_kind"] = "summary"
        return values

    def counts(self, counts: Counts | None) -> None:
        self.count = resolve_count(self.spec["count"], counts, self.where)
        if "kinds" in self.spec:
            self.kinds = resolve_names(self.spec["kinds"], counts, self.where)

    def rows_per_sample(self, ctx: Context) -> int:
        """Rows one sample index makes: one per chunk (``per: chunk``) or one per leaf."""
        if self.spec["per"] != "chunk":
            return 1
        return max(1, len(self._chunks(ctx)) * (len(self.kinds) if self.kinds is not None else 1))

    def _chunks(self, ctx: Context) -> list[tuple[str, str, int, dict[str, Any] | None]]:
        """(row id prefix, text, document chunk index, source) of each chunk rows are made for:
        the document's, then (unless this block writes the rewrites) the leaf's kept rewrites."""
        chunks = ctx.seeds.get("chunks") or []
        out: list[tuple[str, str, int, dict[str, Any] | None]] = [
            (f"c{c}", text, c, None) for c, text in enumerate(chunks)
        ]
        if self.kinds is None:
            out += [
                (a["id"], a["chunk"], a["index"], {"index": a["index"], "kind": a["kind"]})
                for a in ctx.seeds.get("augmented") or []
            ]
        return out

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

    def _ids(self, ctx: Context, samples: range) -> list[tuple[str, Any, Any, int, Row]]:
        """(row id, chunk, chunk index, sample, extra columns) of each row to make."""
        if self.spec["per"] == "leaf":
            # Per leaf, a leaf with a document still grounds each row on one chunk, in turn.
            chunks = ctx.seeds.get("chunks") or []
            indices = [s % len(chunks) if chunks else None for s in samples]
            return [
                (f"s{s}", chunks[i] if i is not None else None, i, s, {})
                for s, i in zip(samples, indices, strict=True)
            ]
        units = self._chunks(ctx)
        if not units:
            raise PipelineError(
                f"{ctx.leaf}: a per-chunk pipeline needs document chunks and this leaf has "
                "none; give the leaf a document or set generate.pipeline: simple"
            )
        if self.kinds is not None:
            return [
                (f"{prefix}.{kind}{s}", text, index, s, {"augment_kind": kind})
                for prefix, text, index, _ in units
                for kind in self.kinds
                for s in samples
            ]
        return [
            (f"{prefix}.s{s}", text, index, s, {"_chunk_source": source} if source else {})
            for prefix, text, index, source in units
            for s in samples
        ]

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        first, count = ctx.window or (0, self.count)
        out: list[Row] = []
        made = self._ids(ctx, range(first, first + count))
        for row_id, chunk, chunk_index, sample, extra in made:
            rng = random.Random(derive_seed(ctx.seed, ctx.leaf, self.name, row_id))
            out.append(
                {
                    "_id": row_id,
                    "_seeds": {},
                    "_templates": {},
                    "_scores": {},
                    "chunk": chunk,
                    "chunk_index": chunk_index,
                    "sample": sample,
                    "examples": self._examples(ctx, rng),
                    **extra,
                }
            )
        return out, []
