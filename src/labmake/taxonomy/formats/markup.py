"""Word (.docx) and HTML -> Markdown: mammoth turns a .docx into clean HTML (headings, lists,
tables, emphasis from the document's styles), and markdownify writes HTML as Markdown.

Chosen by measurement (README, "Documents"): both are pure Python and small, need no network,
and keep headings, lists and tables; python-docx loses lists and tables' shape unless walked
by hand. Only content is kept: scripts, styles, navigation, forms and images are dropped, and
links keep their text, not their address.
"""

from __future__ import annotations

import io
import re
import zipfile

from labmake.taxonomy.formats.errors import UnreadableDocument

# A .docx is a zip: its parts, once inflated, may not exceed this (a zip bomb would).
MAX_DOCX_INFLATED_BYTES = 256 << 20
# Elements whose content is not the document's text.
_DROPPED = (
    "script",
    "style",
    "noscript",
    "template",
    "iframe",
    "object",
    "embed",
    "svg",
    "canvas",
    "nav",
    "header",
    "footer",
    "form",
    "button",
    "head",
    "aside",
)
_BLANK_RUN = re.compile(r"\n{3,}")


def docx_to_markdown(data: bytes) -> str:
    import mammoth

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UnreadableDocument(
            "is not a Word document (.docx files are zip archives; this one is not)",
            "save it from Word as .docx (the older .doc format is not read), or export its text "
            "as Markdown",
        ) from None
    inflated = sum(info.file_size for info in archive.infolist())
    if inflated > MAX_DOCX_INFLATED_BYTES:
        raise UnreadableDocument(
            f"inflates to {inflated} bytes, over the {MAX_DOCX_INFLATED_BYTES} byte limit",
            "split it into smaller documents",
        )
    if "word/document.xml" not in archive.namelist():
        raise UnreadableDocument(
            "is a zip archive but not a Word document (it has no word/document.xml)",
            "save it from Word as .docx, or export its text as Markdown",
        )
    try:
        result = mammoth.convert_to_html(io.BytesIO(data))
    except Exception as exc:  # mammoth raises many kinds on a damaged file
        raise UnreadableDocument(
            f"cannot be read as a Word document ({type(exc).__name__})",
            "open it in Word and save it again as .docx, or export its text as Markdown",
        ) from None
    return _markdown(result.value)


def html_to_markdown(data: bytes) -> str:
    from bs4 import BeautifulSoup

    # bs4 reads the page's declared encoding (or guesses one): web pages are not always UTF-8.
    soup = BeautifulSoup(data, "html.parser")
    for element in soup(_DROPPED):
        element.decompose()
    content = soup.find("main") or soup.find("article") or soup.body or soup
    return _markdown(str(content))


def _markdown(html: str) -> str:
    from markdownify import markdownify

    text = markdownify(
        html,
        heading_style="ATX",
        bullets="-",
        strip=["a", "img"],
        table_infer_header=True,
    )
    lines = [line.rstrip() for line in text.splitlines()]
    return _BLANK_RUN.sub("\n\n", "\n".join(lines)).strip() + "\n"
