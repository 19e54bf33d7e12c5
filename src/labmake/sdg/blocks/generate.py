"""Blocks that ask the teacher to write: ``generate`` (text into a column) and what it shares
with ``judge`` (render a template per row, fit it to the context, send, keep the answers).

Every value a prompt shows is escaped first (:func:`labmake.sdg.parse.escape`), so leaf text
cannot open or close the prompt's fields. ``max_tokens`` is a number, or a budget from the
leaf's own seeds: ``{like: [answer], min: 64, scale: 1.5}`` gives room for ``scale`` times the
leaf's longest seed answer (in the teacher's tokens), at least ``min`` and at most half of
``teacher.n_ctx``, so a leaf of long contexts gets room for a long context; ``times: N`` (a
number or a count name such as ``freeform.pairs_per_request``) is room for N such items, for a
request that writes several.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from labmake.core.hashing import derive_seed
from labmake.sdg import parse, templates
from labmake.sdg.blocks.base import (
    Block,
    Context,
    Counts,
    PipelineError,
    Row,
    reject,
    resolve_count,
)
from labmake.teacher.protocol import Completion, Request

BUDGET_FIELDS = ("context", "question", "answer")
TAG_TOKENS = 8  # a field's tags, around its value


def check_budget(spec: Any, where: str) -> None:
    """A block's ``max_tokens``: a positive integer or ``{like: [fields], min, scale}``."""
    if isinstance(spec, int) and not isinstance(spec, bool) and spec > 0:
        return
    fields = spec.get("like") if isinstance(spec, dict) else None
    ok = (
        isinstance(fields, list)
        and fields
        and set(fields) <= set(BUDGET_FIELDS)
        and set(spec) <= {"like", "min", "scale", "times"}
        and isinstance(spec.get("min", 1), int)
        and isinstance(spec.get("scale", 1.0), int | float)
    )
    if not ok:
        raise PipelineError(
            f"{where}: max_tokens is a positive integer or {{like: [fields of "
            f"{list(BUDGET_FIELDS)}], min: N, scale: X, times: N}}, not {spec!r}"
        )


class TeacherBlock(Block):
    """Shared by generate and judge: render a template per row, ask the teacher, store text."""

    default_stop: ClassVar[tuple[str, ...]] = ()

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        if "max_tokens" in spec:
            check_budget(spec["max_tokens"], where)
        self.times = 1  # items one request writes (a budget's `times`), resolved by counts()

    def template_names(self) -> list[str]:
        return [self.spec["template"]]

    def counts(self, counts: Counts | None) -> None:
        spec = self.spec.get("max_tokens")
        if isinstance(spec, dict):  # a wrong count name in `times` is found before a request
            self.times = resolve_count(spec.get("times", 1), counts, self.where)

    def needs(self, override_dir: str | None) -> set[str]:
        names = templates.variables(self.spec["template"], override_dir)
        return names - set(templates.LEAF_GLOBALS)

    def max_tokens(self, ctx: Context) -> int:
        spec = self.spec.get("max_tokens", ctx.max_tokens)
        if isinstance(spec, int):
            return spec
        fields = tuple(spec["like"])
        room = math.ceil(float(spec.get("scale", 1.5)) * ctx.longest(fields))
        room += TAG_TOKENS * len(fields)
        return max(int(spec.get("min", 16)) * self.times, min(room * self.times, ctx.n_ctx // 2))

    def _fan_out(self, rows: list[Row], ctx: Context) -> list[Row]:
        return rows

    def _ask(
        self, rows: list[Row], ctx: Context, label: str | None = None
    ) -> tuple[list[Row], list[Completion], list[Row]]:
        """(rows asked, their completions, rows rejected because no prompt fit); ``label``: what
        the progress line calls the requests (default: the block's name)."""
        name = self.spec["template"]
        sha = templates.sha256(name, ctx.override_dir)
        stop = tuple(self.spec.get("stop", self.default_stop))
        max_tokens = self.max_tokens(ctx)
        asked, requests, rejected, tails = [], [], [], []
        for row in self._fan_out(rows, ctx):
            values = {**ctx.globals(), **{k: v for k, v in row.items() if not k.startswith("_")}}
            values = {k: parse.escape_value(v) for k, v in values.items()}
            prompt = templates.render(name, values, ctx.override_dir)
            # Drop few-shot examples one at a time until the prompt leaves room for the answer.
            while not ctx.fits(prompt, max_tokens) and len(values.get("examples") or []) > 1:
                values["examples"] = values["examples"][:-1]
                prompt = templates.render(name, values, ctx.override_dir)
            if not ctx.fits(prompt, max_tokens):
                rejected.append(reject(row, self.name, "prompt_too_long"))
                continue
            seed = derive_seed(ctx.seed, ctx.leaf, self.name, row["_id"])
            requests.append(Request(prompt, seed, max_tokens, stop))
            # The open tag the prompt ends with ("<question>"): the completion continues it, so
            # parsing puts it back in front.
            tails.append(parse.open_tail(prompt))
            asked.append(
                {
                    **row,
                    "_seeds": {**row["_seeds"], self.name: seed},
                    "_templates": {**row["_templates"], self.name: sha},
                }
            )
        self._tails = tails
        if ctx.dry:
            ctx.log.extend(requests)
            return asked, [Completion("", True) for _ in requests], rejected
        completions = ctx.complete(requests, f"{ctx.leaf}: {label or self.name}")
        # A request the teacher refused (or complete_all never sent) has no text to use.
        failed = {i for i, c in enumerate(completions) if getattr(c, "error", None)}
        rejected += [reject(asked[i], self.name, "teacher_error") for i in sorted(failed)]
        self._tails = [t for i, t in enumerate(tails) if i not in failed]
        keep = [i for i in range(len(asked)) if i not in failed]
        return [asked[i] for i in keep], [completions[i] for i in keep], rejected


class GenerateBlock(TeacherBlock):
    """A teacher call that writes text into ``output``; ``n`` requests per row when given."""

    type = "generate"
    allowed = frozenset({"template", "output", "max_tokens", "stop", "n"})
    required = frozenset({"template", "output"})

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def counts(self, counts: Counts | None) -> None:
        super().counts(counts)
        self.n = resolve_count(self.spec["n"], counts, self.where) if "n" in self.spec else None

    def _fan_out(self, rows: list[Row], ctx: Context) -> list[Row]:
        if self.n is None:
            return rows
        return [{**row, "_id": f"{row['_id']}.n{k}"} for row in rows for k in range(self.n)]

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        asked, completions, rejected = self._ask(rows, ctx)
        out = self.spec["output"]
        # _finished False: the teacher hit max_tokens, so the last item written may be cut off.
        # _raw: what the teacher wrote (after the prompt's open tag), kept with a rejected sample.
        kept = [
            {
                **row,
                out: c.text,
                "_finished": {**row.get("_finished", {}), out: c.finished},
                "_tails": {**row.get("_tails", {}), out: tail},
                "_raw": {**row.get("_raw", {}), self.name: tail + c.text},
            }
            for row, c, tail in zip(asked, completions, self._tails, strict=True)
        ]
        return kept, rejected
