"""Reading one untrusted qna.yaml: bytes -> text -> YAML nodes -> plain data.

Everything here treats the file as hostile. The text is read with a size cap, must be UTF-8
without NUL bytes, and is parsed with PyYAML's pure-Python SafeLoader: the very loader behind
``yaml.safe_load``, which the reference validator uses, so a file parses here exactly when it
parses there. No tag can construct anything but plain data (strings, numbers, lists, maps,
dates); ``!!python/...`` and unknown tags are refused. Aliases are legal YAML, but a few nested
aliases can stand for billions of nodes ("billion laughs"), so the composed node graph is
measured, with aliases expanded, before anything walks the data.

The node graph is kept beside the data so that a finding can point at a line and column
(:mod:`labmake.taxonomy.yaml_nodes`).
"""

from __future__ import annotations

import codecs
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node, ScalarNode

from labmake.taxonomy.yaml_nodes import children, iter_nodes, line_col

# A real qna.yaml is a few kB; the largest of 1,891 files in the InstructLab taxonomy's history
# is 0.6 MB (a knowledge file that pasted whole documents as contexts).
MAX_QNA_BYTES = 1 << 20
# Limits on the data once every alias is expanded: ample for any hand-written file, tiny next
# to what an alias bomb expands to (10 levels of 10 aliases: 10**10 nodes).
MAX_EXPANDED_NODES = 200_000
MAX_EXPANDED_CHARS = 16 * MAX_QNA_BYTES


@dataclass(frozen=True)
class Problem:
    """Why a file could not be read or parsed; becomes one error finding."""

    message: str
    hint: str
    source: str  # 'yaml' | 'security'
    line: int | None = None
    col: int | None = None


class ReadError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


@dataclass(frozen=True)
class Parsed:
    text: str
    node: Node | None
    data: Any


# ---------------------------------------------------------------------------------- reading


def read_text(path: Path, what: str = "qna.yaml", max_bytes: int = MAX_QNA_BYTES) -> str:
    """The file's text with newlines normalized, or :class:`ReadError` saying what is wrong.

    Newlines are translated as Python's text mode does (CRLF and CR become LF) because the
    reference reads the file with ``Path.read_text``; yamllint therefore never sees a CR.
    """
    return decode(read_bytes(path, what, max_bytes, _QNA_TOO_BIG), what)


_QNA_TOO_BIG = (
    "a taxonomy file holds a handful of short examples; move long text into documents and keep "
    "only excerpts in the file"
)


def read_bytes(
    path: Path, what: str, max_bytes: int, too_big_hint: str = "split it into smaller files"
) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, or :class:`ReadError`."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _err(
                f"{what} is not a regular file",
                "replace it with an ordinary file (devices, pipes and folders are not read)",
                "security",
            )
        if st.st_size > max_bytes:
            raise _err(
                f"{what} is {_size(st.st_size)}, over the {_size(max_bytes)} limit",
                too_big_hint,
                "security",
            )
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise _err(
            f"cannot read {what}: {exc.strerror}", "check the path and permissions"
        ) from None
    if len(raw) > max_bytes:  # grew between stat and read
        raise _err(
            f"{what} is over the {_size(max_bytes)} limit", "keep the file small", "security"
        )
    return raw


def decode(raw: bytes, what: str = "qna.yaml") -> str:
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if raw.startswith(bom):
            raise _err(
                f"{what} is saved as {name}, not UTF-8",
                "save it again as UTF-8 (in most editors: File > Save with Encoding > UTF-8)",
            )
    kind = _binary_kind(raw)
    if kind:
        raise _err(
            f"{what} is a binary file ({kind}), not text",
            "a taxonomy file must be plain UTF-8 text; put the YAML text here, not an export "
            "or a copy of another file",
            "security",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _err(
            f"{what} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at line {line}, column {col})",
            "the file was saved in another encoding (often Windows-1252 or Latin-1); save it "
            "again as UTF-8",
            line=line,
            col=col,
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_MAGIC = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive or Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x7fELF", "an executable"),
    (b"\x1f\x8b", "a gzip archive"),
)


def _binary_kind(raw: bytes) -> str | None:
    for magic, name in _MAGIC:
        if raw.startswith(magic):
            return name
    if b"\x00" in raw:
        return "it contains NUL bytes"
    return None


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def _err(
    message: str, hint: str, source: str = "yaml", line: int | None = None, col: int | None = None
) -> ReadError:
    return ReadError(Problem(message, hint, source, line, col))


# ---------------------------------------------------------------------------------- parsing


def parse(text: str) -> Parsed:
    """Parse like ``yaml.safe_load`` (same loader, same result), keeping the node graph."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # the reader refuses control characters up front
        raise ReadError(_control_problem(text, exc)) from None
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise ReadError(_syntax_problem(exc)) from None
        if node is None:
            return Parsed(text, None, None)
        check_expansion(node)
        try:
            data = loader.construct_document(node)
        except yaml.constructor.ConstructorError as exc:
            raise ReadError(_constructor_problem(exc)) from None
        except (ValueError, OverflowError) as exc:
            raise ReadError(_value_problem(node, exc)) from None
        return Parsed(text, node, data)
    except RecursionError:
        raise _err(
            "the YAML is nested too deeply to read",
            "a taxonomy file needs only a few levels; remove the deeply nested brackets",
            "security",
        ) from None
    finally:
        loader.dispose()


# What usually causes PyYAML's complaints in hand-written qna.yaml files, and the fix.
_SYNTAX_HINTS = (
    (
        "mapping values are not allowed here",
        "a value contains ': ' (colon and space) without quotes; wrap the whole value in quotes, "
        "or write it as a block: `key: |` and the text on the following lines, indented",
    ),
    (
        "could not find expected ':'",
        "a line of a multi-line value is indented less than the text above it, or a key lacks "
        "its colon; indent every line of the value the same (or use `key: |`)",
    ),
    (
        "expected chomping or indentation indicators",
        "after `|` or `>` the text must start on the next line; only `-`, `+` or a digit may "
        "follow the `|` on the same line",
    ),
    (
        "expected a comment or a line break",
        "after `|` or `>` the text must start on the next line, indented",
    ),
    (
        "found unknown escape character",
        "inside double quotes a backslash starts an escape; double it (\\\\), or use single "
        "quotes or a `|` block instead",
    ),
    (
        "found unexpected end of stream",
        "a quote is opened and never closed; close it or use a `|` block",
    ),
    (
        "found character '\\t' that cannot start any token",
        "YAML indentation must use spaces, not tabs; replace the tabs with spaces",
    ),
    (
        "expected <block end>",
        "the indentation of this line does not match its neighbours; keys of one mapping and "
        "items of one list must start in the same column",
    ),
    (
        "expected a single document in the stream",
        "the file holds more than one YAML document (a second `---`); keep one",
    ),
    ("found duplicate anchor", "each `&anchor` name may be defined only once"),
    ("found undefined alias", "`*name` refers to an `&name` anchor that is not defined above it"),
    (
        "special characters are not allowed",
        "the file contains an invisible control character; delete it (retype the line)",
    ),
)


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    what = "; ".join(str(p) for p in (exc.context, exc.problem) if p)
    hint = next(
        (h for key, h in _SYNTAX_HINTS if key in what),
        "fix the YAML at this position (see https://yaml.org for the syntax)",
    )
    return Problem(f"YAML syntax error: {what}", hint, "yaml", *line_col(mark))


# The control characters people meet: pasted from a terminal (ESC: colours, cursor moves) or
# a chat (BEL), or left by an editor (backspace, form feed).
_CONTROL_NAMES = {0x07: "BEL", 0x08: "backspace", 0x0C: "form feed", 0x1B: "ESC", 0x7F: "DEL"}


def _control_problem(text: str, exc: yaml.reader.ReaderError) -> Problem:
    """A character YAML does not allow in a file (a control character, mostly): where it is."""
    at = exc.position if isinstance(exc.position, int) else 0
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
    name = _CONTROL_NAMES.get(code, "a control character")
    escape = " (a terminal escape sequence)" if code == 0x1B else ""
    return Problem(
        f"the file contains the invisible character U+{code:04X} ({name}){escape}, which YAML "
        "does not allow",
        "delete it: retype the line, or copy the text from a plain-text source (it often comes "
        "with text pasted from a terminal)",
        "yaml",
        line,
        col,
    )


def _constructor_problem(exc: yaml.constructor.ConstructorError) -> Problem:
    problem = exc.problem or "cannot read a value"
    where = line_col(exc.problem_mark or exc.context_mark)
    if "could not determine a constructor for the tag" in problem:
        tag = problem.rsplit(" ", 1)[-1].strip("'")
        shown = tag.replace("tag:yaml.org,2002:", "!!")
        if "python/" in tag:
            return Problem(
                f"tag {shown} asks YAML to run Python code; taxonomy files may hold only data",
                "remove the tag; write the value as plain text",
                "security",
                *where,
            )
        return Problem(
            f"unknown YAML tag {shown}",
            "remove the tag (the `!...` word before the value); write the value as plain text",
            "security",
            *where,
        )
    if "found unhashable key" in problem:
        return Problem("a key is a list or a mapping", "keys must be plain words", "yaml", *where)
    if "found unconstructable recursive node" in problem:
        return Problem(
            "an alias refers to the node that contains it", "remove the alias", "security", *where
        )
    return Problem(
        f"cannot read a value: {problem}",
        "write the value as plain text (quote it)",
        "yaml",
        *where,
    )


def _value_problem(root: Node, exc: Exception) -> Problem:
    """A scalar PyYAML resolved to a date or a number could not be built; find which one."""
    constructor = yaml.constructor.SafeConstructor()
    for node in iter_nodes(root):
        if isinstance(node, ScalarNode):
            try:
                constructor.construct_object(node)
            except Exception:  # the scalar that fails on its own is the culprit
                return Problem(
                    f"the value {node.value[:40]!r} looks like a date or a number but is not "
                    f"one ({exc})",
                    "put the value in quotes to keep it as text",
                    "yaml",
                    *line_col(node.start_mark),
                )
    return Problem(f"a value cannot be read: {exc}", "put odd values in quotes", "yaml")


# ------------------------------------------------------------------------------ alias bombs


def check_expansion(root: Node) -> None:
    """Refuse alias bombs and self-referencing aliases, in time linear in the file size.

    An alias is the same node object as its anchor, so the graph has one node per written
    node; its size with aliases expanded is computed bottom-up, each node once.
    """
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()  # nodes whose subtree is being measured: the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            nodes, chars = 1, len(node.value) if isinstance(node, ScalarNode) else 0
            for child in children(node):
                n, c = sizes[id(child)]
                nodes, chars = nodes + n, chars + c
            sizes[key] = (nodes, chars)
            if nodes > MAX_EXPANDED_NODES or chars > MAX_EXPANDED_CHARS:
                line, col = line_col(node.start_mark)
                what = (
                    f"{MAX_EXPANDED_NODES:,} values"
                    if nodes > MAX_EXPANDED_NODES
                    else f"{MAX_EXPANDED_CHARS:,} characters"
                )
                raise _err(
                    f"`*alias` references expand this file past {what} (an alias bomb)",
                    "write the content out instead of nesting `*alias` references; a taxonomy "
                    "file never needs them",
                    "security",
                    line,
                    col,
                )
            continue
        if key in sizes:
            continue
        if key in active:
            line, col = line_col(node.start_mark)
            raise _err(
                "an alias refers to a node that contains it (an endless structure)",
                "remove the `*alias` that points back into its own anchor",
                "security",
                line,
                col,
            )
        active.add(key)
        stack.append((node, True))
        for child in children(node):
            if id(child) not in sizes:
                stack.append((child, False))
