"""The ``judge`` block: a teacher call whose short answer is parsed to a score.

``check: {swap: answer}``: before judging a leaf's rows, the judge is asked about the leaf's own
seeds, as written and with another seed's answer (:mod:`labmake.sdg.judge_check`); a judge that
cannot tell them apart often enough (``generate.judge_check.min_auc``) judges none of the leaf's
rows: they pass unjudged (score None, listed in ``_unjudged``, which a ``filter`` on that score
lets through), so noise never decides which samples a leaf keeps. The check runs once per leaf
(rounds share its result through ``Context.judge_checks``); a dry run prices its requests and
assumes the judge is used.
"""

from __future__ import annotations

import logging
from typing import Any

from labmake.sdg import judge_check, parse, templates
from labmake.sdg.blocks.base import Context, PipelineError, Row
from labmake.sdg.blocks.generate import BUDGET_FIELDS, TeacherBlock

log = logging.getLogger(__name__)

# What a checked judge's template may read: a seed's fields and the few-shot examples.
CHECK_COLUMNS = frozenset({*BUDGET_FIELDS, "examples"})


class JudgeBlock(TeacherBlock):
    """A teacher call whose short answer is parsed to a score in ``output`` (None: no verdict)."""

    type = "judge"
    allowed = frozenset({"template", "output", "max_tokens", "stop", "scale", "labels", "check"})
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
        check = spec.get("check")
        if check is not None and (
            not isinstance(check, dict)
            or set(check) != {"swap"}
            or check["swap"] not in BUDGET_FIELDS
        ):
            raise PipelineError(
                f"{where}: check is {{swap: FIELD}}, FIELD one of {list(BUDGET_FIELDS)} (the "
                f"seed field another seed's value replaces), not {check!r}"
            )

    def max_tokens(self, ctx: Context) -> int:
        return int(self.spec.get("max_tokens", 4))

    def needs(self, override_dir: str | None) -> set[str]:
        names = super().needs(override_dir)
        if "check" in self.spec and not names <= CHECK_COLUMNS:
            raise PipelineError(
                f"{self.where}: a checked judge is asked about the leaf's seeds, so its template "
                f"may read only {sorted(CHECK_COLUMNS)} and {list(templates.LEAF_GLOBALS)}, not "
                f"{sorted(names - CHECK_COLUMNS)}; drop check or those columns"
            )
        return names

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def _check(self, ctx: Context) -> judge_check.JudgeCheck | None:
        """This leaf's check of the judge (None: the block has none, it is off, or a dry run)."""
        min_auc = ctx.gen.judge_check.min_auc
        if "check" not in self.spec or min_auc == 0:
            return None
        if self.name in ctx.judge_checks:
            return ctx.judge_checks[self.name]
        made = judge_check.items(
            list(ctx.seeds["seed_examples"]),
            self.spec["check"]["swap"],
            ctx.gen.examples_per_prompt,
            ctx.seed,
            ctx.leaf,
            self.name,
        )
        rows = [{"_id": i.row_id, "_seeds": {}, "_templates": {}, **i.values} for i in made]
        asked, completions, _ = self._ask(rows, ctx, f"{self.name} check")
        if ctx.dry:  # priced; a plan assumes the judge is used
            return None
        kinds = {i.row_id: i.kind for i in made}
        scores: dict[str, list[float | None]] = {
            judge_check.AS_WRITTEN: [],
            judge_check.SWAPPED: [],
        }
        for row, completion in zip(asked, completions, strict=True):
            score = parse.parse_score(completion.text, self.scale, self.labels)
            scores[kinds[row["_id"]]].append(score)
        own, swapped = scores[judge_check.AS_WRITTEN], scores[judge_check.SWAPPED]
        auc = judge_check.auc(own, swapped) if own and swapped else None
        result = judge_check.JudgeCheck(auc, len(own) * len(swapped), min_auc)
        ctx.judge_checks[self.name] = result
        log.info("%s: %s", ctx.leaf, result.describe(self.name))
        return result

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        check = self._check(ctx)
        out = self.spec["output"]

        def noted(row: Row) -> Row:
            """``row`` with this judge's check among the checks it met (none: as it is)."""
            if check is None:
                return row
            return {
                **row,
                "_judge_checks": {**row.get("_judge_checks", {}), self.name: check.summary()},
            }

        if check is not None and not check.used:
            return [
                noted(
                    {
                        **row,
                        out: None,
                        "_scores": {**row["_scores"], out: None},
                        "_verdicts": {**row.get("_verdicts", {}), out: "unjudged"},
                        "_unjudged": (*row.get("_unjudged", ()), out),
                    }
                )
                for row in rows
            ], []
        asked, completions, rejected = self._ask(rows, ctx)
        texts = [c.text for c in completions]
        best = max([*self.labels.values(), *(self.scale or ())])
        kept = []
        for row, text in zip(asked, texts, strict=True):
            score = best if ctx.dry else parse.parse_score(text, self.scale, self.labels)
            kept.append(
                noted(
                    {
                        **row,
                        out: score,
                        "_scores": {**row["_scores"], out: score},
                        "_verdicts": {**row.get("_verdicts", {}), out: text.strip()[:40]},
                    }
                )
            )
        return kept, rejected
