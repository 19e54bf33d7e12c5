"""The ``options`` block: a multiple-choice question's wrong options, split and made distinct,
and what makes two options the same (shared with the multiple-choice stage)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from labmake.core.text import content_words, tokens
from labmake.sdg.blocks.base import Block, Context, Row

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
