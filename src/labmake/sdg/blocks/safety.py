"""The safety blocks: ``safety`` (the policy's deterministic detectors and lexicon) and
``safety_judge`` (the teacher, with the policy as its rubric).

Two layers, each a block any pipeline may use; every shipped pipeline runs both. The
deterministic layer decides alone: it never reads the judge's verdict, so a weak teacher can
add removals but never take one back. A removed row's reason is the category it breaks (the
first in the policy's order), and every row that passes a safety block carries ``_safety``:
the policy's name, version and sha256, what the detectors found, the judge's verdict. The
filter stage counts these per layer and category (``labmake.sdg.safety_stats``).
"""

from __future__ import annotations

from typing import Any

from labmake.core import safety
from labmake.core.safety import SAFE, Policy
from labmake.sdg.blocks.base import Block, Context, PipelineError, Row, reject
from labmake.sdg.blocks.generate import TeacherBlock

DETECTORS = "detectors"  # the layers, as the stats name them
JUDGE = "judge"
NO_VERDICT = "no_verdict"
DEFAULT_TEMPLATE = "judge_safety.j2"
# Row columns the judge block sets for its own template (and removes after).
_POLICY, _TEXT = "safety_policy", "safety_text"


def policy_of(ctx: Context) -> Policy:
    """The build's policy: generate.safety.policy, or the shipped one."""
    return safety.load(ctx.gen.safety.policy)


def _columns(spec: dict[str, Any], where: str) -> list[str]:
    columns = spec["columns"]
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise PipelineError(f"{where}: columns is a list of the columns to check")
    return columns


def _value(row: Row, column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\n".join(str(v) for v in value)
    return str(value)


def _noted(row: Row, policy: Policy, **info: Any) -> Row:
    return {**row, "_safety": {**row.get("_safety", {}), "policy": policy.identity(), **info}}


def _removed(row: Row, block: str, layer: str, category: str) -> Row:
    row = {**row, "_safety": {**row["_safety"], "removed": {"layer": layer, "category": category}}}
    return reject(row, block, category)


class SafetyBlock(Block):
    """Drop rows whose ``columns`` trip a detector or a lexicon term of the policy."""

    type = "safety"
    allowed = frozenset({"columns"})
    required = frozenset({"columns"})

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, spec, where)
        self.columns = _columns(spec, where)

    def needs(self, override_dir: str | None) -> set[str]:
        return set(self.columns)

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        policy = policy_of(ctx)
        kept, rejected = [], []
        for row in rows:
            if ctx.dry:  # plans price every row as passing
                kept.append(_noted(row, policy, detectors=[]))
                continue
            found = []
            for column in self.columns:
                for hit in safety.scan(_value(row, column), policy):
                    found.append((column, hit))
            hits = [{"category": h.category, "detector": h.detector, "column": c} for c, h in found]
            row = _noted(row, policy, detectors=hits)
            category = safety.first_category([h for _, h in found], policy)
            if category is None:
                kept.append(row)
            else:
                rejected.append(_removed(row, self.name, DETECTORS, category))
        return kept, rejected


def parse_verdict(text: str, policy: Policy) -> str | None:
    """The judge's verdict, read strictly: the first line must be ``safe`` or a category id
    (case and a final full stop aside), else None. "safe, but ..." or "unsafe" is no verdict."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    word = lines[0].strip().rstrip(".").strip().lower() if lines else ""
    return word if word in (SAFE, *policy.ids()) else None


def sample_text(row: Row, columns: list[str]) -> str:
    """The columns as one line for the judge; its own tag is made inert inside the text."""
    text = " ".join(" ".join(_value(row, c).split()) for c in columns if _value(row, c).strip())
    return text.replace("<text>", "&lt;text&gt;").replace("</text>", "&lt;/text&gt;")


class SafetyJudgeBlock(TeacherBlock):
    """Ask the teacher whether ``columns`` break the policy; drop rows judged unsafe.

    The prompt (``template``, default judge_safety.j2) shows the policy's categories and its
    worked verdicts. ``generate.safety.judge: false`` passes every row without asking;
    ``generate.safety.no_verdict`` says what a reply that is no verdict does.
    """

    type = "safety_judge"
    allowed = frozenset({"columns", "template", "max_tokens", "stop"})
    required = frozenset({"columns"})
    default_stop = ("\n",)

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        super().__init__(name, {"template": DEFAULT_TEMPLATE, **spec}, where)
        self.columns = _columns(spec, where)

    def needs(self, override_dir: str | None) -> set[str]:
        return (super().needs(override_dir) - set(self.template_values())) | set(self.columns)

    def template_values(self) -> dict[str, Any]:
        return {_POLICY: safety.load().rubric(), _TEXT: "<text>"}

    def max_tokens(self, ctx: Context) -> int:
        return int(self.spec.get("max_tokens", 6))

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        policy = policy_of(ctx)
        if not ctx.gen.safety.judge:
            return [_noted(row, policy, judge="off") for row in rows], []
        rubric = policy.rubric()
        shown = [{**r, _POLICY: rubric, _TEXT: sample_text(r, self.columns)} for r in rows]
        asked, completions, refused = self._ask(shown, ctx)
        kept, rejected = [], [_plain(r) for r in refused]
        for row, completion in zip(asked, completions, strict=True):
            verdict = SAFE if ctx.dry else parse_verdict(completion.text, policy)
            verdicts = {**row.get("_verdicts", {}), self.name: completion.text.strip()[:40]}
            row = _noted({**_plain(row), "_verdicts": verdicts}, policy, judge=verdict)
            if verdict == SAFE or (verdict is None and ctx.gen.safety.no_verdict == "keep"):
                kept.append(row)
            else:
                rejected.append(_removed(row, self.name, JUDGE, verdict or NO_VERDICT))
        return kept, rejected


def _plain(row: Row) -> Row:
    """The row without the judge's own template columns."""
    return {k: v for k, v in row.items() if k not in (_POLICY, _TEXT)}
