"""Leaf names the build can carry: each rule here is one way a folder name breaks Snakemake.

A leaf's name becomes part of every path its rules make (``build/seeds/{leaf}.json``, ...)
and the value of Snakemake's ``{leaf}`` wildcard. Some names pass ``validate`` and ``plan`` and
only fail inside Snakemake, with its own words (WildcardError, MissingInputException,
PeriodicWildcardError): ``labmake validate`` and the leaf scan refuse them first, saying which
rule the name breaks.
"""

from __future__ import annotations

import re
import unicodedata

from labmake.taxonomy.findings import printable

# The build adds suffixes (".stats.json") and temporary-file prefixes to a leaf's last
# folder, and file systems stop at 255 bytes a name; whole names stay readable in logs.
MAX_LEAF_CHARS = 200
MAX_FOLDER_BYTES = 200
# Snakemake refuses a wildcard value that ends in one substring repeated 20 times or more
# (it takes it for a rule feeding itself): snakemake.io.PeriodicityDetector.
_PERIODIC = re.compile(r"((?P<unit>.+?)(?P=unit){19,})\Z", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def leaf_name_problem(leaf: str) -> tuple[str, str] | None:
    """(what is wrong with the name, the fix), or None for a name the build can carry."""
    shown = printable(leaf)
    rename = "rename the folder"
    if "{" in leaf or "}" in leaf:
        return (
            f"leaf name '{shown}' contains '{{' or '}}', which Snakemake reads as a wildcard "
            "in every path made from it",
            f"{rename} without braces",
        )
    control = _CONTROL.search(leaf)
    if control:
        char = control.group()
        return (
            f"leaf name '{shown}' contains the control character U+{ord(char):04X} "
            f"({unicodedata.name(char, _CONTROL_NAMES.get(char, 'control'))}), which "
            "Snakemake's wildcards do not match",
            f"{rename} with letters, digits, '_' or '-'",
        )
    if len(leaf) > MAX_LEAF_CHARS:
        return (
            f"leaf name is {len(leaf)} characters long, over the {MAX_LEAF_CHARS} labmake "
            "allows (the build's file names are made from it)",
            "use shorter folder names",
        )
    long = [p for p in leaf.split("/") if len(p.encode("utf-8")) > MAX_FOLDER_BYTES]
    if long:
        return (
            f"folder name '{printable(long[0][:40])}'... is {len(long[0].encode('utf-8'))} "
            f"bytes, over the {MAX_FOLDER_BYTES} labmake allows (file systems stop at 255)",
            "use shorter folder names",
        )
    periodic = _PERIODIC.search(leaf) if len(leaf) >= 20 else None
    if periodic:
        unit = periodic.group("unit")
        return (
            f"leaf name ends in '{printable(unit)}' repeated "
            f"{len(periodic.group(1)) // len(unit)} times, which Snakemake takes for a rule "
            "that feeds itself (PeriodicWildcardError)",
            f"{rename} so that it does not end in a long repetition",
        )
    return None


_CONTROL_NAMES = {"\n": "LINE FEED", "\t": "TAB", "\r": "CARRIAGE RETURN", "\x1b": "ESCAPE"}
