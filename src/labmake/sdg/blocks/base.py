"""What every block shares: rows, the run context, the Block base class, errors and counts.

A block takes the rows that reach it and returns (kept, rejected) rows. Rows are dicts of
columns; keys that start with ``_`` are bookkeeping (id, seeds, template hashes, scores, why a
row was rejected). Every block declares the columns it needs and produces, so a pipeline is
checked before any teacher call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from labmake.core.config import GenerateConfig
from labmake.teacher.protocol import Completion, Request

Row = dict[str, Any]
# What a pipeline's count names resolve against: (the params.yaml section's name, its typed
# config). The SDG pipelines count in ``generate``; the multiple-choice one in
# ``evaluate`` (``multiple_choice.questions_per_chunk``).
Counts = tuple[str, Any]


class PipelineError(ValueError):
    """A pipeline file is wrong; the message names the file, the block and the fix."""


@dataclass
class Context:
    """What blocks need while running one leaf."""

    seeds: dict[str, Any]  # the leaf's seeds record (build/seeds/{leaf}.json)
    gen: GenerateConfig
    seed: int  # the build's global seed
    max_tokens: int  # the teacher's default cap per request
    complete: Callable[[list[Request], str], list[Completion]]
    fits: Callable[[str, int], bool]  # (prompt, max_tokens) -> leaves room in the context?
    override_dir: str | None = None
    dry: bool = False  # plan only: no teacher; every row survives with typical values
    log: list[Request] = field(default_factory=list)  # dry runs: the requests it would send
    counts: Counts | None = None  # None: count names are generate.* keys
    # Tokens of a text as the teacher counts them (an estimate when planning): budgets from the
    # leaf's own seed lengths, within n_ctx.
    count_tokens: Callable[[str], int] = lambda text: len(text) // 4 + 1
    n_ctx: int = 2048
    # Rounds: the samples (per chunk or per leaf) the rows block makes this round, as
    # (first sample index, how many); None: the first round, the pipeline's own count.
    window: tuple[int, int] | None = None
    # Rounds: what each dedup block has seen in earlier rounds (block name -> keys).
    seen: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    # The filter stage's rules with what the leaf's earlier rounds had accepted
    # (labmake.sdg.accept.Acceptor); None outside the generate stage: a rules block passes all.
    acceptor: Any = None
    # Rounds: each checked judge's verdict on the leaf's seeds (block name -> JudgeCheck), asked
    # once per leaf (labmake.sdg.judge_check).
    judge_checks: dict[str, Any] = field(default_factory=dict)
    _longest: dict[tuple[str, ...], int] = field(default_factory=dict)

    def count_root(self) -> Counts:
        return self.counts or ("generate", self.gen)

    @property
    def leaf(self) -> str:
        return str(self.seeds["leaf"])

    def globals(self) -> dict[str, Any]:
        return {
            "leaf": self.seeds["leaf"],
            "kind": self.seeds["kind"],
            "grounded": bool(self.seeds.get("grounded")),
            "task_description": self.seeds.get("task_description") or "",
        }

    def typical(self, name: str) -> str:
        """A stand-in for a value the teacher would write (dry runs price prompts with it): the
        leaf's longest seed value of that field, so a plan never under-prices a prompt."""
        if name == "rewrite":  # a chunk rewritten (labmake.sdg.augment): about its length
            return max(self.seeds.get("chunks") or [""], key=len)
        examples = self.seeds["seed_examples"] or [{"question": "", "answer": "", "context": ""}]
        if name not in ("question", "answer", "context"):
            name = "answer"
        values = [str(e.get(name) or e["answer"]) for e in examples]
        return max(values, key=len)

    def longest(self, fields: tuple[str, ...]) -> int:
        """Tokens of the leaf's longest seed example in ``fields`` (summed over the fields)."""
        if fields not in self._longest:
            self._longest[fields] = max(
                (
                    sum(self.count_tokens(str(e.get(f) or "")) for f in fields)
                    for e in self.seeds["seed_examples"]
                ),
                default=0,
            )
        return self._longest[fields]


def reject(row: Row, block: str, reason: str) -> Row:
    """``row``, marked as dropped by ``block`` for ``reason``."""
    return {**row, "_rejected_by": block, "_reason": reason}


# Teacher requests one count may ask for. Real counts are tens; a typo of 100000000 would
# have `labmake plan` render that many prompts (hanging) and a build send them.
MAX_COUNT = 10_000


def resolve_count(value: Any, counts: Counts | None, where: str) -> int:
    """An int, or a dotted name into a params.yaml section (``freeform.questions``)."""
    count = _count(value, counts, where)
    if count > MAX_COUNT:
        raise PipelineError(
            f"{where}: count {value!r} is {count:,}, over labmake's cap of {MAX_COUNT:,} "
            "requests per count; use a smaller number"
        )
    return count


def _count(value: Any, counts: Counts | None, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    section, target = _lookup(value, counts, where, "a count must be an integer")
    if not isinstance(target, int) or isinstance(target, bool):
        raise PipelineError(f"{where}: {section}.{value} is not an integer")
    return target


def resolve_names(value: Any, counts: Counts | None, where: str) -> tuple[str, ...]:
    """A list of names, or a dotted name of one in a params.yaml section
    (``knowledge.augment.kinds``)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    section, target = _lookup(value, counts, where, "a list of names must be a list")
    if not isinstance(target, tuple | list) or not all(isinstance(v, str) for v in target):
        raise PipelineError(f"{where}: {section}.{value} is not a list of names")
    return tuple(target)


def _lookup(value: Any, counts: Counts | None, where: str, what: str) -> tuple[str, Any]:
    """(the section's name, the value of the dotted name ``value`` in it)."""
    section, target = counts if counts is not None else ("generate", GenerateConfig())
    if not isinstance(value, str):
        raise PipelineError(f"{where}: {what} or a {section}.* name")
    for part in value.split("."):
        if not hasattr(target, part):
            raise PipelineError(
                f"{where}: {section}.{value} is not a key of params.yaml's {section} section"
            )
        target = getattr(target, part)
    return section, target


class Block:
    type: ClassVar[str]
    allowed: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, spec: dict[str, Any], where: str) -> None:
        self.name = name
        self.where = where
        unknown = set(spec) - self.allowed - {"name", "type"}
        if unknown:
            raise PipelineError(
                f"{where}: unknown key(s) {sorted(unknown)} for a {self.type!r} block; "
                f"allowed: {sorted(self.allowed)}"
            )
        missing = self.required - set(spec)
        if missing:
            raise PipelineError(f"{where}: a {self.type!r} block needs {sorted(missing)}")
        self.spec = spec

    def needs(self, override_dir: str | None) -> set[str]:
        return set()

    def produces(self) -> set[str]:
        return set()

    def placeholders(self) -> dict[str, Any]:
        """Stand-in values of the produced columns, for rendering templates in a check."""
        return {c: f"<{c}>" for c in self.produces()}

    def template_names(self) -> list[str]:
        return []

    def template_values(self) -> dict[str, Any]:
        """Values the block gives its own templates besides row columns and leaf globals (the
        safety judge's policy): stand-ins here, for rendering templates in a check."""
        return {}

    def counts(self, counts: Counts | None) -> None:
        """Resolve the block's counts against a params section (raises PipelineError)."""

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        raise NotImplementedError
