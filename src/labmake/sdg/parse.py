"""Framing that leaf text cannot break, and strict parsers for what a base teacher writes.

Every value a prompt shows or asks for sits between tags the prompts introduce:
``<context>...</context>``, ``<question>...</question>``, ``<answer>...</answer>``,
``<document>...</document>``, ``<wrong>...</wrong>`` (a multiple-choice question's wrong
options) and ``<rewrite>...</rewrite>`` (a knowledge chunk rewritten before Q/A generation). A
value is read up to its own closing tag, so whatever it holds -- lines that begin ``Q:``, ``A:``, ``Document:`` or ``Context:``, ``---`` rules, YAML, code blocks, any language --
is data, never a field boundary. Text shown in a prompt (seed examples, the task description,
what the teacher wrote earlier) goes through :func:`escape` first, so a tag written inside leaf
text cannot open or close a field either; parsed values go through :func:`unescape`.

An item is a run of fields (``{"question": ..., "answer": ...}``); an item ends where a field
repeats, an earlier field (in :data:`TAGS` order) opens again, or a ``---`` rule stands between
two fields. A field the teacher left open
at the end of its text ends there: :func:`split` says which one, so the caller can tell a value
cut off at max_tokens from one the closing tag's stop string ended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# In the order fields appear in an item.
TAGS = ("document", "context", "question", "answer", "wrong", "rewrite")
_ORDER = {name: i for i, name in enumerate(TAGS)}
_TAG = re.compile(r"<(/?)(" + "|".join(TAGS) + r")>")
# Escaped form of a tag inside text: "&lt;" keeps it readable to the teacher and to people.
_ESCAPED = re.compile(r"&lt;(/?)(" + "|".join(TAGS) + r")&gt;")
_OPEN_TAIL = re.compile(r"<(" + "|".join(TAGS) + r")>")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z]+")
_SEPARATOR = re.compile(r"-{2,}")


def open_tag(name: str) -> str:
    return f"<{name}>"


def close_tag(name: str) -> str:
    return f"</{name}>"


def escape(text: str) -> str:
    """``text`` with every framing tag in it made inert (``<answer>`` -> ``&lt;answer&gt;``).

    Only the framing tags change; a text without them is returned as it is, so escaping costs a
    leaf without them nothing (its prompts, and so its cached answers, stay the same).
    """
    return _TAG.sub(lambda m: f"&lt;{m.group(1)}{m.group(2)}&gt;", text)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`, for values parsed out of a teacher's text."""
    return _ESCAPED.sub(lambda m: f"<{m.group(1)}{m.group(2)}>", text)


def escape_value(value: object) -> object:
    """:func:`escape` applied to every string inside ``value`` (lists and mappings too)."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, Mapping):
        return {k: escape_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_value(v) for v in value]
    return value


def open_tail(prompt: str) -> str:
    """The open tag a prompt ends with (``<question>``), which the completion continues; ""."""
    match = _OPEN_TAIL.search(prompt[-16:])
    return match.group(0) if match and prompt.endswith(match.group(0)) else ""


@dataclass
class Parsed:
    """What :func:`split` read: items, stray text outside any field, the field left open."""

    items: list[dict[str, str]] = field(default_factory=list)
    stray: int = 0  # runs of text outside any field (separators and blank lines do not count)
    open_field: str | None = None  # the last item's last field, when its closing tag is missing


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.out = Parsed()
        self.current: dict[str, str] = {}
        self.field: str | None = None  # the open field
        self.start = 0  # where the open field's value (or the stray text) starts
        self.last: str | None = None  # the last field read into the current item

    def outside(self, end: int) -> None:
        lines = [ln.strip() for ln in self.text[self.start : end].splitlines()]
        if any(ln and not _SEPARATOR.fullmatch(ln) for ln in lines):
            self.out.stray += 1
        if any(_SEPARATOR.fullmatch(ln) for ln in lines):
            self.flush()  # a "---" rule between fields (never inside one) ends the item

    def close_field(self, end: int) -> None:
        assert self.field is not None
        self.current[self.field] = unescape(self.text[self.start : end].strip())
        self.last, self.field = self.field, None

    def open(self, name: str, end: int) -> None:
        repeats = name in self.current or (
            self.last is not None and _ORDER[name] < _ORDER[self.last]
        )
        if repeats:
            self.flush()
        self.field, self.start = name, end

    def flush(self) -> None:
        if self.current:
            self.out.items.append(self.current)
        self.current, self.last = {}, None

    def read(self) -> Parsed:
        for match in _TAG.finditer(self.text):
            closing, name = match.group(1) == "/", match.group(2)
            if self.field is None:
                self.outside(match.start())
                if not closing:
                    self.open(name, match.end())
                else:
                    self.start = match.end()  # a closing tag nothing opened: stray
                continue
            # A tag inside an open value can only be the teacher's (leaf text is escaped): its
            # own closing tag ends the value; any other tag ends it too, as a missing close.
            self.close_field(match.start())
            self.start = match.end()
            if not closing:
                self.open(name, match.end())
        if self.field is not None:
            self.out.open_field = self.field
            self.close_field(len(self.text))
        else:
            self.outside(len(self.text))
        self.flush()
        return self.out


def split(text: str) -> Parsed:
    """Every item of ``text`` (values stripped and unescaped), stray text, the open field."""
    return _Reader(text).read()


def split_items(text: str) -> tuple[list[dict[str, str]], int]:
    """All items of ``text`` as {field: value}, and the count of stray runs outside any item."""
    parsed = split(text)
    return parsed.items, parsed.stray


def parse_items(text: str) -> tuple[list[dict[str, str]], int]:
    """Well-formed question/answer items (``context`` optional) and the count of malformed ones."""
    items, stray = split_items(text)
    good = [i for i in items if i.get("question") and i.get("answer")]
    return good, stray + len(items) - len(good)


# A sentence ends at . ! ? before a space (or the end), or at a CJK full stop, ! or ?.
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)|[\u3002\uff01\uff1f][\"')\]\u300d]?")


def trim_cut_off(item: dict[str, str]) -> dict[str, str] | None:
    """An item whose text ran into max_tokens, cut back to its last full sentence.

    Only the last field can be cut; None when it has no sentence end to cut back to (a base
    teacher that rambles past max_tokens usually wrote one or more whole sentences first).
    """
    last = list(item)[-1]
    ends = list(_SENTENCE_END.finditer(item[last]))
    if not ends:
        return None
    return {**item, last: item[last][: ends[-1].end()].strip()}


def first_sentences(text: str, n: int) -> str:
    """``text`` up to the end of its ``n``-th sentence (all of it when it has fewer)."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[n - 1].end()].strip() if len(ends) >= n else text


def first_item(text: str, required: tuple[str, ...]) -> dict[str, str] | None:
    """The first item of ``text`` if it has every ``required`` field with a non-empty value.

    Only the first item counts: a request asks for exactly one, and whatever the teacher wrote
    after it (it often goes on past the stop) is not paid for by the sample counts.
    """
    items, _ = split_items(text)
    if not items:
        return None
    item = items[0]
    return item if all(item.get(name) for name in required) else None


def parse_score(
    text: str, scale: tuple[float, float] | None, labels: Mapping[str, float]
) -> float | None:
    """A judge's verdict: the first word that is a label (yes/no) or the first number on the scale.

    A weak judge often writes more than the verdict ("Yes, because ..." or "4/5 - good"): only
    the start of its first line is read; anything else (an out-of-scale number, no verdict)
    gives None, which no threshold accepts.
    """
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    head = line.strip()[:40]
    lowered = {k.lower(): v for k, v in labels.items()}
    word = _WORD.search(head)
    number = _NUMBER.search(head)
    # Whichever comes first decides: "yes, 3 reasons" is a yes; "2 - no" is a 2.
    is_label = word is not None and word.group(0).lower() in lowered
    if word is not None and is_label and (not number or word.start() < number.start()):
        return lowered[word.group(0).lower()]
    if number and scale is not None:
        value = float(number.group(0))
        if scale[0] <= value <= scale[1]:
            return value
    return None
