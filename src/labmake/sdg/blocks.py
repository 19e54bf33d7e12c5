"""The blocks a pipeline is made of, in a registry keyed by stable type names.

A block takes the rows that reach it and returns (kept, rejected) rows. Rows are dicts of
columns; keys that start with ``_`` are bookkeeping (id, seeds, template hashes, scores, why a
row was rejected). Every block declares the columns it needs and produces, so a pipeline is
checked before any teacher call.

Types: ``rows`` (the source: per chunk or per leaf, with few-shot examples), ``generate`` (a
teacher call that writes text), ``parse`` (read marked fields out of that text), ``judge``
(a teacher call that writes a verdict, parsed to a score), ``overlap`` (share of a text's
content words found in another column: a rule-based grounding score), ``filter`` (keep rows
whose value is within bounds), ``dedup`` (exact duplicates of some columns), ``options`` (a
multiple-choice question's wrong options, split and made distinct).
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from labmake.core.config import GenerateConfig
from labmake.core.hashing import derive_seed
from labmake.core.text import content_overlap, content_words, tokens
from labmake.sdg import parse, templates
from labmake.teacher.base import Completion, Request

Row = dict[str, Any]
# What a pipeline's count names resolve against: (the params.yaml section's name, its typed
# config). The SDG pipelines count in ``generate``; the multiple-choice one in
# ``evaluate`` (``multiple_choice.questions_per_chunk``).
Counts = tuple[str, Any]
_TAIL = re.compile("(" + "|".join(parse.MARKERS) + "):")


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

    def typical(self, marker: str) -> str:
        """A stand-in for a value the teacher would write (dry runs price prompts with it)."""
        examples = self.seeds["seed_examples"]
        first = examples[0] if examples else {"question": "", "answer": "", "context": ""}
        if marker == "Q":
            return str(first["question"])
        if marker == "Context":
            return str(first.get("context") or first["answer"])
        return str(first["answer"])


def _reject(row: Row, block: str, reason: str) -> Row:
    return {**row, "_rejected_by": block, "_reason": reason}


def _resolve_count(value: Any, counts: Counts | None, where: str) -> int:
    """An int, or a dotted name into a params.yaml section (``freeform.questions``)."""
    section, target = counts if counts is not None else ("generate", GenerateConfig())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise PipelineError(f"{where}: a count must be an integer or a {section}.* name")
    for part in value.split("."):
        if not hasattr(target, part):
            raise PipelineError(
                f"{where}: {section}.{value} is not a key of params.yaml's {section} section"
            )
        target = getattr(target, part)
    if not isinstance(target, int) or isinstance(target, bool):
        raise PipelineError(f"{where}: {section}.{value} is not an integer")
    return target


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

    def counts(self, counts: Counts | None) -> None:
        """Resolve the block's counts against a params section (raises PipelineError)."""

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        raise NotImplementedError


class RowsBlock(Block):
    """The source: ``count`` rows per chunk (``per: chunk``) or per leaf, each with examples."""

    type = "rows"
    allowed = frozenset({"per", "count", "examples"})
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
        self.count = _resolve_count(self.spec["count"], counts, self.where)

    def _examples(self, ctx: Context, rng: random.Random) -> list[Any]:
        wanted = ctx.gen.examples_per_prompt
        if self.examples == "by_context":
            groups: dict[str, list[dict[str, Any]]] = {}
            for ex in ctx.seeds["seed_examples"]:
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
        examples = list(ctx.seeds["seed_examples"])
        rng.shuffle(examples)
        return examples[:wanted]

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        chunks = ctx.seeds.get("chunks") or []
        if self.spec["per"] == "chunk":
            if not chunks:
                raise PipelineError(
                    f"{ctx.leaf}: a per-chunk pipeline needs document chunks and this leaf has "
                    "none; give the leaf a document or set generate.pipeline: simple"
                )
            ids = [(f"c{c}.s{s}", c, s) for c in range(len(chunks)) for s in range(self.count)]
        else:
            # Per leaf, a leaf with a document still grounds each row on one chunk, in turn.
            ids = [(f"s{s}", s % len(chunks) if chunks else None, s) for s in range(self.count)]
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


class _TeacherBlock(Block):
    """Shared by generate and judge: render a template per row, ask the teacher, store text."""

    default_stop: ClassVar[tuple[str, ...]] = ()

    def template_names(self) -> list[str]:
        return [self.spec["template"]]

    def needs(self, override_dir: str | None) -> set[str]:
        names = templates.variables(self.spec["template"], override_dir)
        return names - set(templates.LEAF_GLOBALS)

    def max_tokens(self, ctx: Context) -> int:
        return int(self.spec.get("max_tokens", ctx.max_tokens))

    def _fan_out(self, rows: list[Row], ctx: Context) -> list[Row]:
        return rows

    def _ask(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Completion], list[Row]]:
        """(rows asked, their completions, rows rejected because no prompt fit)."""
        name = self.spec["template"]
        sha = templates.sha256(name, ctx.override_dir)
        stop = tuple(self.spec.get("stop", self.default_stop))
        max_tokens = self.max_tokens(ctx)
        asked, requests, rejected, tails = [], [], [], []
        for row in self._fan_out(rows, ctx):
            values = {**ctx.globals(), **{k: v for k, v in row.items() if not k.startswith("_")}}
            prompt = templates.render(name, values, ctx.override_dir)
            # Drop few-shot examples one at a time until the prompt leaves room for the answer.
            while not ctx.fits(prompt, max_tokens) and len(values.get("examples") or []) > 1:
                values["examples"] = values["examples"][:-1]
                prompt = templates.render(name, values, ctx.override_dir)
            if not ctx.fits(prompt, max_tokens):
                rejected.append(_reject(row, self.name, "prompt_too_long"))
                continue
            seed = derive_seed(ctx.seed, ctx.leaf, self.name, row["_id"])
            requests.append(Request(prompt, seed, max_tokens, stop))
            # The open marker the prompt ends with ("Q:", "Context:"): the completion continues
            # it, so parsing puts it back in front.
            last = prompt.rsplit("\n", 1)[-1].strip()
            tails.append(last if _TAIL.fullmatch(last) else "")
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
        completions = ctx.complete(requests, f"{ctx.leaf}: {self.name}")
        # A request the teacher refused (or complete_all never sent) has no text to use.
        failed = {i for i, c in enumerate(completions) if getattr(c, "error", None)}
        rejected += [_reject(asked[i], self.name, "teacher_error") for i in sorted(failed)]
        self._tails = [t for i, t in enumerate(tails) if i not in failed]
        keep = [i for i in range(len(asked)) if i not in failed]
        return [asked[i] for i in keep], [completions[i] for i in keep], rejected


class GenerateBlock(_TeacherBlock):
    """A teacher call that writes text into ``output``; ``n`` requests per row when given."""

    type = "generate"
    allowed = frozenset({"template", "output", "max_tokens", "stop", "n"})
    required = frozenset({"template", "output"})

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def counts(self, counts: Counts | None) -> None:
        self.n = _resolve_count(self.spec["n"], counts, self.where) if "n" in self.spec else None

    def _fan_out(self, rows: list[Row], ctx: Context) -> list[Row]:
        if self.n is None:
            return rows
        return [{**row, "_id": f"{row['_id']}.n{k}"} for row in rows for k in range(self.n)]

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        self.counts(ctx.count_root())
        asked, completions, rejected = self._ask(rows, ctx)
        out = self.spec["output"]
        # _finished False: the teacher hit max_tokens, so the last item written may be cut off.
        kept = [
            {
                **row,
                out: c.text,
                "_finished": c.finished,
                "_tails": {**row.get("_tails", {}), out: tail},
            }
            for row, c, tail in zip(asked, completions, self._tails, strict=True)
        ]
        return kept, rejected


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
                    rejected.append(_reject(row, self.name, "cut_off"))
                    continue
            if self.spec.get("items", "first") == "first":
                items = items[:1]  # a request asks for one item; what follows is not paid for
            found = [i for i in items if all(i.get(m) for m in required)]
            if not found:
                rejected.append(_reject(row, self.name, "unparsable"))
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


class JudgeBlock(_TeacherBlock):
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
                rejected.append(_reject(row, self.name, reason))
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
                rejected.append(_reject(row, self.name, "exact_duplicate"))
                continue
            seen.add(key)
            kept.append(row)
        return kept, rejected


_BULLET = re.compile(r"^(?:(?:[-*\u2022]|\(?[A-Da-d1-9][.)])\s+)+")  # "- ", "(b) ", "2. "


def option_key(text: str) -> str:
    """What makes two multiple-choice options the same: their content words, in order.

    Case, punctuation, articles and other stop words do not count ("The Red Sea." is "red sea");
    an option made only of stop words keeps all its words.
    """
    return " ".join(content_words(text) or tokens(text))


def _within(x: set[str], y: set[str]) -> bool:
    # Spelling variants count as the same word ("movable", "moveable").
    return all(w in y or difflib.get_close_matches(w, y, n=1, cutoff=0.85) for w in x)


def same_option(a: str, b: str) -> bool:
    """Whether two options say the same: the content words of one hold all of the other's
    ("He made movable type" and "In Mainz, he made moveable type.")."""
    x, y = set(option_key(a).split()), set(option_key(b).split())
    return _within(x, y) or _within(y, x)


def split_options(text: str) -> list[str]:
    """Options one per line; on a single line, separated by semicolons.

    When the first line is a bullet ("- ..."), only the run of bullets counts: a base teacher
    often goes on with prose after its list.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and _BULLET.match(lines[0].strip()):
        end = next((i for i, ln in enumerate(lines) if not _BULLET.match(ln.strip())), len(lines))
        lines = lines[:end]
    return lines if len(lines) > 1 else lines[0].split(";") if lines else []


class OptionsBlock(Block):
    """Split ``wrong`` (options one per line, or ``;``-separated) into the list ``output``.

    Kept: distinct options (by :func:`option_key`) that are not the ``answer`` in other words:
    one whose content words all occur in the answer, or that holds all of the answer's, would
    make two options correct (a small teacher often restates the answer as a "wrong" one).
    With ``source`` (the chunk), an option whose content words all occur in it is dropped too:
    copied from the document, it is likely true. Rows are never dropped here: a question short
    of wrong options is filled later from its leaf's other answers.
    """

    type = "options"
    allowed = frozenset({"answer", "wrong", "output", "max_words", "source"})
    required = frozenset({"answer", "wrong", "output"})

    def needs(self, override_dir: str | None) -> set[str]:
        return {self.spec["answer"], self.spec["wrong"]} | (
            {self.spec["source"]} if "source" in self.spec else set()
        )

    def produces(self) -> set[str]:
        return {self.spec["output"]}

    def placeholders(self) -> dict[str, Any]:
        return {self.spec["output"]: ["<wrong 1>", "<wrong 2>"]}

    def _usable(self, option: str, answer: str, source: set[str] | None) -> bool:
        words = set(option_key(option).split())
        if not words or same_option(option, answer):
            return False
        return source is None or not words <= source

    def run(self, rows: list[Row], ctx: Context) -> tuple[list[Row], list[Row]]:
        max_words = int(self.spec.get("max_words", 12))
        kept = []
        for row in rows:
            if ctx.dry:
                kept.append({**row, self.spec["output"]: [ctx.typical("A")] * 3})
                continue
            answer = row[self.spec["answer"]] or ""
            source = (
                set(option_key(row[self.spec["source"]] or "").split())
                if "source" in self.spec
                else None
            )
            options: list[str] = []
            for raw in split_options(row[self.spec["wrong"]] or ""):
                option = _BULLET.sub("", raw.strip()).strip().rstrip(".").strip()
                # A long "option" is the teacher rambling on, not a choice.
                if len(option.split()) > max_words or not self._usable(option, answer, source):
                    continue
                if not any(same_option(option, o) for o in options):
                    options.append(option)
            kept.append({**row, self.spec["output"]: options})
        return kept, []


REGISTRY: dict[str, type[Block]] = {
    cls.type: cls
    for cls in (
        RowsBlock,
        GenerateBlock,
        ParseBlock,
        JudgeBlock,
        OverlapBlock,
        FilterBlock,
        DedupBlock,
        OptionsBlock,
    )
}


def make(spec: Any, where: str) -> Block:
    if not isinstance(spec, dict) or "name" not in spec or "type" not in spec:
        raise PipelineError(f"{where}: each block is a mapping with a name and a type")
    if spec["type"] not in REGISTRY:
        raise PipelineError(
            f"{where}: unknown block type {spec['type']!r}; known: {sorted(REGISTRY)}"
        )
    return REGISTRY[spec["type"]](str(spec["name"]), spec, f"{where} (block {spec['name']!r})")


def placeholder_row(blocks: Sequence[Block]) -> Row:
    row: Row = {}
    for block in blocks:
        row.update(block.placeholders())
    return row
