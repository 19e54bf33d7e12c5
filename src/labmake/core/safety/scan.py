"""The deterministic layer: a policy's detectors and lexicon run over a text.

It never asks a model, so it gives the same answer on every machine and cannot be talked out
of it; a teacher's safety judge is a separate, weaker layer on top. Text is normalised first
(Unicode NFKC, typographic apostrophes and dashes made plain), so that look-alike characters
do not slip a term past. A category's ``allow`` patterns are blanked out before its terms are
read: "kill the process" never reads as "kill ...", while "kill the process, then kill him"
still does.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from labmake.core.safety.personal import DETECTORS
from labmake.core.safety.policy import Category, Policy

_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u2013": "-", "\u2014": "-", "\u00a0": " "})


@dataclass(frozen=True)
class Hit:
    """One finding: the category it breaks, the detector that found it, and where."""

    category: str
    detector: str  # a name of labmake.core.safety.personal.DETECTORS, or "lexicon"
    start: int  # in the normalised text
    end: int
    text: str


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_PLAIN)


def _union(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    # A space in a term stands for any run of whitespace; terms match whole words only.
    body = "|".join("(?:" + p.replace(" ", r"\s+") + ")" for p in patterns)
    return re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)


@functools.cache
def _compiled(category: Category) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
    return _union(category.terms), _union(category.allow)


def _blank(match: re.Match[str]) -> str:
    return " " * len(match.group(0))


def scan(text: str, policy: Policy) -> list[Hit]:
    """Every detector and lexicon hit in ``text``, in the policy's category order."""
    plain = normalise(text)
    hits: list[Hit] = []
    for category in policy.categories:
        for name in category.detectors:
            for start, end in sorted(set(DETECTORS[name](plain, category.public_mailboxes))):
                hits.append(Hit(category.id, name, start, end, plain[start:end]))
        terms, allow = _compiled(category)
        if terms is None:
            continue
        readable = allow.sub(_blank, plain) if allow is not None else plain
        for m in terms.finditer(readable):
            hits.append(Hit(category.id, "lexicon", m.start(), m.end(), plain[m.start() : m.end()]))
    return hits


def first_category(hits: list[Hit], policy: Policy) -> str | None:
    """The category a text is removed for: the first of the policy's order that it breaks."""
    found = {h.category for h in hits}
    return next((c for c in policy.ids() if c in found), None)


def masked(hit: Hit) -> str:
    """The hit as a message may show it: a lexicon phrase as is, personal data masked."""
    if hit.detector == "lexicon":
        return hit.text
    keep = re.sub(r"[A-Za-z0-9]", "*", hit.text[2:])
    return hit.text[:2] + keep
