"""Strict parsers for what a few-shot base teacher writes: items and judge verdicts.

An item is a run of ``Marker: value`` fields (``Context:``, ``Q:``, ``A:``, ``Document:``, and
``Wrong:`` for a multiple-choice question's wrong options); a field's value runs until the next
marker, so answers may span lines. Items end at a ``---``
line, or where a marker repeats or an earlier field starts again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MARKERS = ("Document", "Context", "Q", "A", "Wrong")
_ORDER = {name: i for i, name in enumerate(MARKERS)}
_MARKER = re.compile(r"^(" + "|".join(MARKERS) + r"):\s?(.*)$")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z]+")
_DASHES = re.compile(r"-{2,}")


def split_items(text: str) -> tuple[list[dict[str, str]], int]:
    """All items of ``text`` as {marker: value}, and the count of stray lines outside any item."""
    items: list[dict[str, str]] = []
    stray = 0
    current: dict[str, list[str]] = {}
    field: str | None = None

    def close() -> None:
        nonlocal current, field
        if current:
            items.append({k: "\n".join(v).strip() for k, v in current.items()})
        current, field = {}, None

    for line in text.splitlines():
        # "---" ends an item; a shorter run of dashes is that delimiter cut off at max_tokens.
        if _DASHES.fullmatch(line.strip()):
            close()
            continue
        match = _MARKER.match(line.strip())
        if match:
            name, value = match.groups()
            # A repeated marker, or one that comes earlier in the order (a new question after an
            # answer), starts the next item.
            if name in current or (field is not None and _ORDER[name] < _ORDER[field]):
                close()
            current[name] = [value]
            field = name
        elif field is not None:
            current[field].append(line)
        elif line.strip():
            stray += 1
    close()
    return items, stray


def parse_items(text: str) -> tuple[list[dict[str, str]], int]:
    """Well-formed Q/A items (``Context`` optional) and the count of malformed ones."""
    items, stray = split_items(text)
    good = [i for i in items if i.get("Q") and i.get("A")]
    return good, stray + len(items) - len(good)


_SENTENCE_END = re.compile(r"[.!?][\"')\]]?(?=\s|$)")


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
    """The first item of ``text`` if it has every ``required`` marker with a non-empty value.

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
