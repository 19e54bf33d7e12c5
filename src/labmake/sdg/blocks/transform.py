"""Blocks that work on the rows alone, without the teacher: ``parse`` (read marked fields out of
a text), ``overlap`` (a rule-based grounding score), ``filter`` (keep rows whose value is within
bounds) and ``dedup`` (drop exact duplicates)."""

from __future__ import annotations

import re
from typing import Any

from labmake.core.text import content_overlap
from labmake.sdg import parse
from labmake.sdg.blocks.base import Block, Context, PipelineError, Row, reject


class ParseBlock(Block):
    """Read the first item's marked fields (``fields: {Q: question}``) from a text column."""

    type = "parse"
    allowed = frozenset({"input", "prefix", "fields", "items", "optional", "max_sentences"})
    required = frozenset({"input", "fields"})

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        fields = spec["fields"]
        if not isinstance(fields, dict) or not fields or set(fields) - set(parse.MARKERS):
            raise PipelineError(
                f"{where}: fields maps markers {list(parse.MARKERS)} to column names"
            )
        if spec.get("items", "first") not in ("first", "all"):
            raise PipelineError(f"{where}: items must be first or all")

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["input"]}

    def produces(self) -> set[str]:
        return set(self.spec["fields"].values())

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        fields: dict[str, str] = self.spec["fields"]
        required = tuple(m for m in fields if m not in self.spec.get("optional", []))
        kept, rejected = [], []
        for row in rows:
            if ctx.dry:
                kept.append({**row, **{col: ctx.typical(m) for m, col in fields.items()}})
                continue
            prefix = self.spec.get("prefix", row.get("_tails", {}).get(self.spec["input"], ""))
            text = prefix + row[self.spec["input"]]
            items, _ = parse.split_items(text)
            if row.get("_finished") is False and items:
                # Cut off at max_tokens: the last item ends mid-sentence; keep its whole ones.
                trimmed = parse.trim_cut_off(items.pop())
                items += [trimmed] if trimmed is not None else []
                if not items:
                    rejected.append(reject(row, self.name, "cut_off"))
                    continue
            if self.spec.get("items", "first") == "first":
                items = items[:1]  # a request asks for one item; what follows is not paid for
            found = [i for i in items if all(i.get(m) for m in required)]
            if not found:
                rejected.append(reject(row, self.name, "unparsable"))
                continue
            for k, item in enumerate(found):
                # A small teacher states the fact first and then rambles on: keep the start.
                for marker, n in (self.spec.get("max_sentences") or {}).items():
                    if item.get(marker):
                        item = {**item, marker: parse.first_sentences(item[marker], int(n))}
                new = {**row, **{col: item.get(m) for m, col in fields.items()}}
                if len(found) > 1 or self.spec.get("items") == "all":
                    new["_id"] = f"{row['_id']}.i{k}"
                kept.append(new)
        return kept, rejected


class FilterBlock(Block):
    """Keep rows whose ``column`` lies in [min, max]; a missing score (None) never passes."""

    type = "filter"
    allowed = frozenset({"column", "min", "max"})
    required = frozenset({"column"})

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["column"]}

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        low, high = self.spec.get("min"), self.spec.get("max")
        kept, rejected = [], []
        for row in rows:
            value = row[self.spec["column"]]
            ok = value is not None and (low is None or value >= low)
            ok = ok and (high is None or value <= high)
            if ok:
                kept.append(row)
            else:
                reason = "no_verdict" if value is None else "below_threshold"
                rejected.append(reject(row, self.name, reason))
        return kept, rejected


class OverlapBlock(Block):
    """``output``: the share of ``text``'s content words found in ``source`` (0-1).

    A rule, not a model: cheap evidence of grounding that lets a pipeline drop plainly
    ungrounded answers before paying for judge calls on them.
    """

    type = "overlap"
    allowed = frozenset({"text", "source", "output"})
    required = allowed

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["text"], self.spec["source"]}

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        out = self.spec["output"]
        kept = []
        for row in rows:
            text, source = row[self.spec["text"]] or "", row[self.spec["source"]] or ""
            score = 1.0 if ctx.dry else round(content_overlap(text, source), 4)
            kept.append({**row, out: score, "_scores": {**row["_scores"], out: score}})
        return kept, []


_SPACE = re.compile(r"\W+")


class DedupBlock(Block):
    """Drop rows whose ``columns`` equal an earlier row's (case and punctuation ignored)."""

    type = "dedup"
    allowed = frozenset({"columns"})
    required = frozenset({"columns"})

    def needs(self, override_dir: str | None) -> set[str]:
        return set(self.spec["columns"])

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        seen: set[tuple[str, ...]] = set()
        kept, rejected = [], []
        for row in rows:
            key = tuple(_SPACE.sub(" ", str(row[c]).lower()).strip() for c in self.spec["columns"])
            if key in seen and not ctx.dry:
                rejected.append(reject(row, self.name, "exact_duplicate"))
                continue
            seen.add(key)
            kept.append(row)
        return kept, rejected
