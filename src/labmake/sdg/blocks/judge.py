"""The ``judge`` block: a teacher call whose short answer is parsed to a score."""

from __future__ import annotations

from typing import Any

from labmake.sdg import parse
from labmake.sdg.blocks.base import Context, PipelineError, Row
from labmake.sdg.blocks.generate import TeacherBlock


class JudgeBlock(TeacherBlock):
    """A teacher call whose short answer is parsed to a score in ``output`` (None: no verdict)."""

    type = "judge"
    allowed = frozenset({"template", "output", "max_tokens", "stop", "scale", "labels"})
    required = frozenset({"template", "output"})
    default_stop = ("\n",)

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        scale = spec.get("scale")
        if scale is not None and (not isinstance(scale, list) or len(scale) != 2):
            raise PipelineError(f"{where}: scale is [low, high]")
        self.scale = (float(scale[0]), float(scale[1])) if scale is not None else None
        labels = spec.get("labels") or {}
        if any(isinstance(k, bool) for k in labels):
            # YAML reads a bare yes/no as a boolean.
            raise PipelineError(f'{where}: quote the labels\' words: {{"yes": 1, "no": 0}}')
        self.labels = {str(k): float(v) for k, v in labels.items()}
        if self.scale is None and not self.labels:
            raise PipelineError(f"{where}: a judge needs a scale, labels or both")

    def max_tokens(self, ctx: Context) -> int:
        return int(self.spec.get("max_tokens", 4))

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        asked, completions, rejected = self._ask(rows, ctx)
        texts = [c.text for c in completions]
        out = self.spec["output"]
        best = max([*self.labels.values(), *(self.scale or ())])
        kept = []
        for row, text in zip(asked, texts, strict=True):
            score = best if ctx.dry else parse.parse_score(text, self.scale, self.labels)
            kept.append(
                {
                    **row,
                    out: score,
                    "_scores": {**row["_scores"], out: score},
                    "_verdicts": {**row.get("_verdicts", {}), out: text.strip()[:40]},
                }
            )
        return kept, rejected
