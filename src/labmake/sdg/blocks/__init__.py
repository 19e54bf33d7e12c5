"""The blocks a pipeline is made of, in a registry keyed by stable type names.

Types: ``rows`` (the source: per chunk or per leaf, with few-shot examples), ``generate`` (a
teacher call that writes text), ``parse`` (read marked fields out of that text), ``judge``
(a teacher call that writes a verdict, parsed to a score), ``overlap`` (share of a text's
content words found in another column: a rule-based grounding score), ``length`` (its words
over another column's), ``filter`` (keep rows whose value is within bounds), ``dedup`` (exact
duplicates of some columns), ``rules`` (the filter stage's rules, before judges are paid for),
``options`` (a multiple-choice question's wrong options, split and made distinct), ``safety``
(the safety policy's deterministic detectors and lexicon) and ``safety_judge`` (the teacher,
with the policy as its rubric).

What blocks share (rows, Context, the Block base class, PipelineError) is in
:mod:`labmake.sdg.blocks.base`; each family of blocks has its own module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labmake.sdg.blocks.base import Block, PipelineError, Row
from labmake.sdg.blocks.generate import GenerateBlock
from labmake.sdg.blocks.judge import JudgeBlock
from labmake.sdg.blocks.options import OptionsBlock
from labmake.sdg.blocks.rows import RowsBlock
from labmake.sdg.blocks.safety import SafetyBlock, SafetyJudgeBlock
from labmake.sdg.blocks.transform import (
    DedupBlock,
    FilterBlock,
    LengthBlock,
    OverlapBlock,
    ParseBlock,
    RulesBlock,
)

REGISTRY: dict[str, type[Block]] = {
    cls.type: cls
    for cls in (
        RowsBlock,
        GenerateBlock,
        ParseBlock,
        JudgeBlock,
        OverlapBlock,
        LengthBlock,
        FilterBlock,
        DedupBlock,
        RulesBlock,
        OptionsBlock,
        SafetyBlock,
        SafetyJudgeBlock,
    )
}


def make(spec: Any, where: str) -> Block:
    if not isinstance(spec, dict) or "name" not in spec or "type" not in spec:
        raise PipelineError(f"{where}: each block is a mapping with a name and a type")
    if not isinstance(spec["type"], str) or spec["type"] not in REGISTRY:
        raise PipelineError(
            f"{where}: unknown block type {spec['type']!r}; known: {sorted(REGISTRY)}"
        )
    return REGISTRY[spec["type"]](str(spec["name"]), spec, f"{where} (block {spec['name']!r})")


def placeholder_row(blocks: Sequence[Block]) -> Row:
    row: Row = {}
    for block in blocks:
        row.update(block.placeholders())
    return row
