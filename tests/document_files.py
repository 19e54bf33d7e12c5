"""Knowledge documents in PDF, Word and HTML, written by real writers for the tests: matplotlib's
PDF backend (the 14 standard fonts, so the file has a real text layer), python-docx, and plain
HTML. Nothing is downloaded. Tests import it as ``document_files`` (tests/ is on sys.path)."""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

Sections = tuple[tuple[str, tuple[str, ...]], ...]

# A short document in sections: (heading, paragraphs); the table shows how each format keeps one.
SECTIONS = (
    (
        "What a lighthouse does",
        (
            "A lighthouse is a tower with a bright light at the top that guides ships at night.",
            "It warns sailors about rocks, reefs and shallow water near the coast.",
        ),
    ),
    (
        "The Fresnel lens",
        (
            "Augustin-Jean Fresnel designed a lens of glass prisms in the 1820s.",
            "It bends the lamp's light into one narrow beam seen 30 kilometres away.",
        ),
    ),
)
TABLE = (("Light", "Range"), ("First-order lens", "20 nautical miles"), ("Fourth-order lens", "14"))


def sections_of(markdown: str) -> tuple[str, Sections]:
    """(title, sections) of a Markdown document written as ``# title`` and ``## heading`` parts."""
    title, sections = "", []
    for block in markdown.split("\n\n"):
        block = " ".join(block.split())
        if block.startswith("## "):
            sections.append((block[3:], []))
        elif block.startswith("# "):
            title = block[2:]
        elif block and sections:
            sections[-1][1].append(block)
    return title, tuple((h, tuple(p)) for h, p in sections)


def write_pdf(path: Path, title: str = "Lighthouses", sections: Sections = SECTIONS) -> Path:
    import matplotlib

    matplotlib.use("pdf")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    rc = {"pdf.use14corefonts": True, "font.family": "sans-serif"}
    lines = [(title, 20)]
    for heading, paragraphs in sections:
        lines.append((heading, 14))
        lines += [(line, 10) for p in paragraphs for line in textwrap.wrap(p, 90)]
    with matplotlib.rc_context(rc), PdfPages(path, metadata={"CreationDate": None}) as pdf:
        figure, y = plt.figure(figsize=(8.27, 11.69)), 0.95
        for text, size in lines:
            if y < 0.08:
                pdf.savefig(figure)
                plt.close(figure)
                figure, y = plt.figure(figsize=(8.27, 11.69)), 0.95
            y -= 0.045 if size > 10 else 0.022
            figure.text(0.08, y, text, fontsize=size)
        if sections is SECTIONS:
            for row in TABLE:
                y -= 0.025
                for k, cell in enumerate(row):
                    figure.text(0.08 + 0.3 * k, y, cell, fontsize=10)
        pdf.savefig(figure)
        plt.close(figure)
    return path


def write_scanned_pdf(path: Path) -> Path:
    """A PDF whose one page is an image: no text layer, as a scan without OCR."""
    import matplotlib

    matplotlib.use("pdf")
    import matplotlib.pyplot as plt
    import numpy as np

    figure = plt.figure(figsize=(4, 4))
    figure.figimage(np.random.default_rng(0).random((64, 64)))
    figure.savefig(path, format="pdf", metadata={"CreationDate": None})
    plt.close(figure)
    return path


def write_docx(path: Path, title: str = "Lighthouses", sections: Sections = SECTIONS) -> Path:
    import docx

    document = docx.Document()
    document.add_heading(title, 1)
    for heading, paragraphs in sections:
        document.add_heading(heading, 2)
        for paragraph in paragraphs:
            document.add_paragraph(paragraph)
    table = document.add_table(rows=len(TABLE), cols=2)
    for i, row in enumerate(TABLE):
        for j, cell in enumerate(row):
            table.cell(i, j).text = cell
    document.add_paragraph("Keepers", style="List Bullet")
    document.save(path)
    return path


def write_html(path: Path, title: str = "Lighthouses", sections: Sections = SECTIONS) -> Path:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, paragraphs in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in paragraphs]
    rows = "".join(
        "<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row) + "</tr>"
        for tag, row in (("th" if i == 0 else "td", row) for i, row in enumerate(TABLE))
    )
    page = (
        "<!doctype html><html><head><title>t</title><style>p{color:red}</style>"
        "<script>var secret = 'not document text';</script></head><body>"
        "<nav><a href='/'>Home</a></nav><main>"
        + "".join(body)
        + f"<table>{rows}</table></main><footer>Footer text</footer></body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path
