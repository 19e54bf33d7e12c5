"""Blocks that work on the rows alone, without the teacher: ``parse`` (read marked fields out of
a text), ``overlap`` (a rule-based grounding score), ``length`` (a text's length against its
source's), ``filter`` (keep rows whose value is within bounds) and ``dedup`` (drop exact
duplicates)."""

from __future__ import annotations

import re
from typing import Any

from labmake.core.text import content_overlap, tokens
from labmake.sdg import parse
from labmake.sdg.blocks.base import (
    Block,
    Context,
    Counts,
    PipelineError,
    Row,
    reject,
    resolve_count,
)

# Field names pipelines used before fields were framed by tags, and what they are now.
_OLD_MARKERS = {"Q": "question", "A": "answer", "Context": "context", "Document": "document"}


class ParseBlock(Block):
    """Read the first item's fields (``fields: {question: question}``) from a text column.

    A field is read up to its own closing tag (:mod:`labmake.sdg.parse`), so nothing the leaf
    or the teacher writes inside a value can split it. ``items: all`` keeps every item (at most
    ``max_items``, a number or a count name: a request that asks for N items pays for N, and
    whatever the teacher wrote past them is dropped). A rejected row says why in ``_reason``
    (``cut_off``, ``missing:<field>``, ``empty:<field>``, ``no_item``); the teacher's raw text
    travels with it.
    """

    type = "parse"
    allowed = frozenset(
        {"input", "prefix", "fields", "items", "max_items", "optional", "max_sentences"}
    )
    required = frozenset({"input", "fields"})

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        fields = spec["fields"]
        if not isinstance(fields, dict) or not fields or set(fields) - set(parse.TAGS):
            old = sorted(set(fields or {}) & set(_OLD_MARKERS)) if isinstance(fields, dict) else []
            hint = (
                f" (prompts now frame values in tags: write {[_OLD_MARKERS[m] for m in old]} "
                f"for {old}, and end the prompt with an open tag such as <question>)"
                if old
                else ""
            )
            raise PipelineError(
                f"{where}: fields maps the tags {list(parse.TAGS)} to column names{hint}"
            )
        if spec.get("items", "first") not in ("first", "all"):
            raise PipelineError(f"{where}: items must be first or all")
        if "max_items" in spec and spec.get("items") != "all":
            raise PipelineError(f"{where}: max_items goes with items: all")
        self.max_items: int | None = None

    def counts(self, counts: Counts | None) -> None:
        if "max_items" in self.spec:
            self.max_items = resolve_count(self.spec["max_items"], counts, self.where)

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["input"]}

    def produces(self) -> set[str]:
        return set(self.spec["fields"].values())

    def _items(self, row: Row) -> tuple[list[dict[str, str]], str | None]:
        """The items to keep from ``row``'s text, or ([], why not)."""
        column = self.spec["input"]
        prefix = self.spec.get("prefix", row.get("_tails", {}).get(column, ""))
        parsed = parse.split(prefix + (row[column] or ""))
        items = parsed.items
        cut = parsed.open_field is not None and row.get("_finished", {}).get(column) is False
        if cut and items:
            # Cut off at max_tokens inside a value: keep the value's whole sentences.
            trimmed = parse.trim_cut_off(items.pop())
            items += [trimmed] if trimmed is not None else []
            if not items:
                return [], "cut_off"
        if not items:
            return [], "no_item"
        if self.spec.get("items", "first") == "first":
            items = items[:1]  # a request asks for one item; what follows is not paid for
        elif self.max_items is not None:
            items = items[: self.max_items]
        optional = self.spec.get("optional", [])
        required = [f for f in self.spec["fields"] if f not in optional]
        found = [i for i in items if all(i.get(f) for f in required)]
        if found:
            return found, None
        missing = next(f for f in required if not items[0].get(f))
        return [], ("empty:" if missing in items[0] else "missing:") + missing

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        fields: dict[str, str] = self.spec["fields"]
        kept, rejected = [], []
        for row in rows:
            if ctx.dry:
                # A plan prices the most a request may give: max_items samples, each judged.
                typical = {col: ctx.typical(f) for f, col in fields.items()}
                many = self.max_items or 1
                kept += [
                    {**row, **typical, **({"_id": f"{row['_id']}.i{k}"} if many > 1 else {})}
                    for k in range(many)
                ]
                continue
            found, why = self._items(row)
            if why is not None:
                rejected.append(reject(row, self.name, why))
                continue
            for k, item in enumerate(found):
                # A small teacher states the fact first and then rambles on: keep the start.
                for name, n in (self.spec.get("max_sentences") or {}).items():
                    if item.get(name):
                        item = {**item, name: parse.first_sentences(item[name], int(n))}
                new = {**row, **{col: item.get(f) for f, col in fields.items()}}
                if len(found) > 1 or (self.spec.get("items") == "all" and self.max_items != 1):
                    new["_id"] = f"{row['_id']}.i{k}"
                kept.append(new)
        return kept, rejected


class FilterBlock(Block):
    """Keep rows whose ``column`` lies in [min, max]; a missing score (None) never passes,
    except on a row its judge passed unjudged (``_unjudged``: the judge failed its check)."""

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
            if self.spec["column"] in row.get("_unjudged", ()):
                kept.append(row)
                continue
            ok = value is not None and (low is None or value >= low)
            ok = ok and (high is None or value <= high)
            if ok:
                kept.append(row)
            else:
                reason = "no_verdict" if value is None else "below_threshold"
                rejected.append(reject(row, self.name, reason))
        return kept, rejected


class _CompareBlock(Block):
    """``output``: a rule-based score of ``text`` against ``source`` (``measure``)."""

    allowed = frozenset({"text", "source", "output"})
    required = allowed

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["text"], self.spec["source"]}

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def measure(self, text: str, source: str) -> float:
        raise NotImplementedError

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        out = self.spec["output"]
        kept = []
        for row in rows:
            text, source = row[self.spec["text"]] or "", row[self.spec["source"]] or ""
            score = 1.0 if ctx.dry else round(self.measure(text, source), 4)
            kept.append({**row, out: score, "_scores": {**row["_scores"], out: score}})
        return kept, []


class OverlapBlock(_CompareBlock):
    """``output``: the share of ``text``'s content words found in ``source`` (0-1).

    A rule, not a model: cheap evidence of grounding that lets a pipeline drop plainly
    ungrounded answers before paying for judge calls on them.
    """

    type = "overlap"

    def measure(self, text: str, source: str) -> float:
        return content_overlap(text, source)


class LengthBlock(_CompareBlock):
    """``output``: ``text``'s words over ``source``'s: a rule that tells a rewrite of a chunk
    that kept almost nothing of it, or rambled on past it, before a judge is paid for it."""

    type = "length"

    def measure(self, text: str, source: str) -> float:
        return len(tokens(text)) / max(1, len(tokens(source)))


_SPACE = re.compile(r"\W+")


class DedupBlock(Block):
    """Drop rows whose ``columns`` equal an earlier row's (case and punctuation ignored), in
    this round or an earlier one (so a later round never pays judges for a repeat). With
    ``source`` (a column), also rows whose ``columns`` equal their own source's: a "rewrite" of
    a chunk that copies it adds nothing the chunk does not."""

    type = "dedup"
    allowed = frozenset({"columns", "source"})
    required = frozenset({"columns"})

    def needs(self, override_dir: str | None) -> set[str]:
        return set(self.spec["columns"]) | (
            {self.spec["source"]} if "source" in self.spec else set()
        )

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        seen = ctx.seen.setdefault(self.name, set()) if not ctx.dry else set()
        kept, rejected = [], []
        for row in rows:
            key = tuple(_words(row[c]) for c in self.spec["columns"])
            copied = "source" in self.spec and key == (_words(row[self.spec["source"]]),) * len(key)
            if copied and not ctx.dry:
                rejected.append(reject(row, self.name, "copy_of_source"))
                continue
            if key in seen and not ctx.dry:
                rejected.append(reject(row, self.name, "exact_duplicate"))
                continue
            seen.add(key)
            kept.append(row)
        return kept, rejected


def _words(value: Any) -> str:
    """``value`` as dedup compares it: lower case, every run of non-word characters a space."""
    return _SPACE.sub(" ", str(value).lower()).strip()


class RulesBlock(Block):
    """The filter stage's own rules (:mod:`labmake.sdg.accept`) on each row, before any judge
    is paid for it: a sample the filters would reject anyway -- empty, too short or long for
    this leaf, a copy of a seed, a duplicate of one accepted in an earlier round -- is dropped
    here with the filter's reason. Reads ``question``, ``answer`` and, when present,
    ``context`` and ``chunk``. Outside the generate stage (no filter section) every row passes.
    """

    type = "rules"

    def needs(self, override_dir: str | None) -> set[str]:
        return {"question", "answer"}

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        if ctx.dry or ctx.acceptor is None:
            return rows, []
        kept, rejected = [], []
        for row in rows:
            reason = ctx.acceptor.precheck(row)
            if reason is None:
                kept.append(row)
            else:
                rejected.append(reject(row, self.name, reason))
        return kept, rejected
