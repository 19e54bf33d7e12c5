"""PDF -> Markdown-like text with pypdfium2 (PDFium's text layer).

Measured against pypdf, pdfminer.six and pdfplumber on this project's sample documents
(README, "Documents"): as good a text layer, words hyphenated at a line end joined again, and
10-30x faster. PDF has no headings, only bigger letters: a short line set clearly larger than
the document's body text becomes a ``#`` heading, one level per size, largest first.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from labmake.taxonomy.formats.errors import UnreadableDocument

# A line is a heading when its letters are this much larger than the body text's...
HEADING_RATIO = 1.15
# ...and it is no longer than a heading is.
HEADING_MAX_CHARS = 120
MAX_HEADING_LEVEL = 3
# PDFium marks a hyphen it found at a line end (a word broken across lines) with U+FFFE.
_SOFT_HYPHEN = "\ufffe"
_SCANNED_HINT = (
    "run OCR on it first so that it has a text layer (e.g. ocrmypdf), or put its text in a "
    "Markdown file beside the qna.yaml"
)

_BLANK_RUN = re.compile(r"\n{3,}")

Line = tuple[str, float]  # the text of a line and the size of its letters (0 when unknown)


def pdf_to_markdown(data: bytes) -> str:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            raise UnreadableDocument(
                "is encrypted (it needs a password)",
                "save a copy without the password, or export its text as Markdown",
            ) from None
        raise UnreadableDocument(
            f"is not a readable PDF ({reason})",
            "save it again from its editor as PDF, or export its text as Markdown",
        ) from None
    try:
        pages = [list(_page_lines(document[index])) for index in range(len(document))]
    finally:
        document.close()
    if not any(text.strip() for page in pages for text, _ in page):
        raise UnreadableDocument(
            f"has no text layer ({len(pages)} page(s) of images: a scan?)", _SCANNED_HINT
        )
    return _markdown(pages)


def _page_lines(page: object) -> Iterator[Line]:
    """The page's lines and their letter sizes, in PDFium's reading order."""
    import pypdfium2.raw as raw

    textpage = page.get_textpage()  # type: ignore[attr-defined]
    try:
        count = textpage.count_chars()
        text = textpage.get_text_range()
        # One character per index, unless the page holds characters outside the BMP (then
        # sizes cannot be matched to characters: the page keeps its text without headings).
        matched = len(text) == count
        start = 0
        for end in [*(i for i, c in enumerate(text) if c == "\n"), len(text)]:
            line = text[start:end].replace("\r", "")
            sizes = []
            if matched:
                sizes = [
                    raw.FPDFText_GetFontSize(textpage.raw, i)
                    for i in range(start, end)
                    if not text[i].isspace()
                ]
            start = end + 1
            yield line, max(sizes) if sizes else 0.0
    finally:
        textpage.close()
        page.close()  # type: ignore[attr-defined]


def _markdown(pages: list[list[Line]]) -> str:
    weights: Counter[float] = Counter()
    for page in pages:
        for text, size in page:
            if size:
                weights[round(size, 1)] += len(text)
    body = weights.most_common(1)[0][0] if weights else 0.0
    heading_sizes = sorted(
        {round(s, 1) for page in pages for t, s in page if _is_heading(t, s, body)}, reverse=True
    )
    level = {s: min(k + 1, MAX_HEADING_LEVEL) for k, s in enumerate(heading_sizes)}
    blocks = []
    for page in pages:
        out: list[str] = []
        for text, size in page:
            text = _join_hyphenated(text).strip()
            if not text:
                continue
            if _is_heading(text, size, body):
                out.append(f"\n{'#' * level[round(size, 1)]} {text}\n")
            else:
                out.append(text)
        blocks.append("\n".join(out).strip())
    return _BLANK_RUN.sub("\n\n", "\n\n".join(b for b in blocks if b)) + "\n"


def _is_heading(text: str, size: float, body: float) -> bool:
    text = text.strip()
    return (
        bool(body)
        and size >= body * HEADING_RATIO
        and 0 < len(text) <= HEADING_MAX_CHARS
        and any(c.isalpha() for c in text)
    )


def _join_hyphenated(text: str) -> str:
    return text.replace(_SOFT_HYPHEN, "")
