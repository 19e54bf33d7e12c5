"""Knowledge documents in the formats people have them, as the text the teacher reads.

Markdown, text and reStructuredText are read as they are (UTF-8). PDF, Word (.docx) and HTML
are converted to Markdown-like text: headings as ``#`` lines, lists and tables as Markdown where
the format keeps them. The converters were chosen by measurement (README, "Documents"): they
are small, run with no network and no model, and are deterministic.

A document is untrusted input, and the libraries that parse PDF and Office files are large:
conversion runs in a child process (:mod:`labmake.taxonomy.formats.worker`) under a time and
memory limit, so a hostile file costs at most that and stops with a message. Converted text
is cached by the source's content hash and the converter's identity, so an unchanged document
is converted once, and a changed one (or a new converter) is converted again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import PurePosixPath

from labmake.core import artifacts
from labmake.taxonomy.formats import worker
from labmake.taxonomy.formats.identity import BUILTIN, ConverterChoice, converter_identity
from labmake.taxonomy.source import ReadError, decode

__all__ = ["BUILTIN", "ConversionError", "Converted", "ConverterChoice", "convert", "format_of"]

log = logging.getLogger(__name__)

# Document formats by file suffix (lower case).
FORMATS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "rst",
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
}
TEXT_FORMATS = frozenset({"markdown", "text", "rst"})
SUFFIXES = tuple(FORMATS)
# A text document is read whole; a PDF or Word file carries fonts and images besides its text.
MAX_TEXT_BYTES = 8 << 20
MAX_BINARY_BYTES = 64 << 20
# The text a conversion may give: as much as a text document may hold.
MAX_CONVERTED_CHARS = MAX_TEXT_BYTES
CONVERT_TIMEOUT_S = 300
FORMATS_HINT = "labmake reads .md, .txt, .rst, .pdf, .docx, .html and .htm documents"


class ConversionError(ValueError):
    """A document cannot be turned into text; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Converted:
    text: str
    format: str
    converter: str  # library and version, e.g. "pypdfium2 5.15.2"; "utf-8" for text formats
    source_sha256: str  # of the document's bytes

    def record(self, name: str) -> dict[str, str]:
        """What the seeds file says of the document: where its text came from."""
        return {
            "name": name,
            "format": self.format,
            "converter": self.converter,
            "source_sha256": self.source_sha256,
            "sha256": hashlib.sha256(self.text.encode("utf-8")).hexdigest(),
        }


def format_of(name: str) -> str | None:
    return FORMATS.get(PurePosixPath(name).suffix.lower())


def max_bytes(name: str) -> int:
    return MAX_TEXT_BYTES if format_of(name) in TEXT_FORMATS else MAX_BINARY_BYTES


def convert(data: bytes, name: str, choice: ConverterChoice = BUILTIN) -> Converted:
    """The text of document ``name`` (its suffix picks the format; ``choice`` the converter of
    PDF, Word and HTML), or :class:`ConversionError` whose message starts with the name."""
    fmt = format_of(name)
    if fmt is None:
        raise ConversionError(f"{name} is not a document labmake reads", FORMATS_HINT)
    digest = hashlib.sha256(data).hexdigest()
    if fmt in TEXT_FORMATS:
        try:
            text = decode(data, f"document {name}")
        except ReadError as exc:
            raise ConversionError(exc.problem.message, exc.problem.hint) from None
        converter = "utf-8"
    else:
        converter = converter_identity(fmt, choice)
        text = _cached_conversion(data, digest, fmt, converter, name, choice)
    if not text.strip():
        raise ConversionError(
            f"document {name} is empty" + ("" if fmt in TEXT_FORMATS else " once converted"),
            "put the document's text in it, or remove it from patterns",
        )
    if len(text) > MAX_CONVERTED_CHARS:
        raise ConversionError(
            f"document {name} converts to {len(text)} characters, over the "
            f"{MAX_CONVERTED_CHARS} limit",
            "split it into smaller documents",
        )
    return Converted(text, fmt, converter, digest)


def _cached_conversion(
    data: bytes, digest: str, fmt: str, converter: str, name: str, choice: ConverterChoice
) -> str:
    key = hashlib.sha256(f"{fmt}\n{converter}".encode()).hexdigest()[:16]
    cached = artifacts.cache_root() / "documents" / f"{digest}-{key}.md"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    text = _convert_in_child(data, fmt, name, choice)
    if text.strip() and len(text) <= MAX_CONVERTED_CHARS:
        try:
            artifacts.write_text_atomic(cached, text)
        except OSError as exc:  # a read-only cache costs a conversion next time, nothing more
            log.warning("cannot cache the text of %s in %s: %s", name, cached.parent, exc)
    return text


def _convert_in_child(data: bytes, fmt: str, name: str, choice: ConverterChoice) -> str:
    """The converter's text, from a child process under :mod:`worker`'s limits."""
    command = [sys.executable, "-m", worker.__name__, fmt, choice.name]
    try:
        result = subprocess.run(
            command + ([choice.docling_models] if choice.docling_models else []),
            input=data,
            capture_output=True,
            timeout=CONVERT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(
            f"document {name} took longer than {CONVERT_TIMEOUT_S} s to convert",
            "the file may be damaged or built to be slow; save it again from its editor, or "
            "export its text as Markdown",
        ) from None
    try:
        reply = json.loads(result.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict):
        detail = result.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ConversionError(
            f"document {name}: the {fmt} converter stopped (exit {result.returncode}"
            + (f": {detail[-1][:200]}" if detail else "")
            + ")",
            "the file may be damaged or too large to convert within the memory limit; save it "
            "again from its editor, or export its text as Markdown",
        )
    if "error" in reply:
        raise ConversionError(f"document {name} {reply['error']}", str(reply["hint"]))
    return str(reply["text"])
