"""Converting knowledge documents: seconds per document for each format, uncached (the child
process, its imports and the conversion) and cached (a content-hash lookup), at a few sizes.

The documents are the test taxonomy's lighthouse text repeated to N sections, written as PDF
(matplotlib, a real text layer), Word (python-docx) and HTML by tests/document_files.py. Each
line prints the format, the size (pages for PDF, sections otherwise, and characters of text out),
the uncached and cached seconds, and characters converted per second.

    .venv/bin/python benchmarks/documents.py [--sections 5 40 160]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import document_files  # noqa: E402
from labmake.taxonomy import formats  # noqa: E402

SOURCE = REPO / "tests/data/taxonomy/knowledge/test/lighthouses/lighthouses.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", type=int, nargs="+", default=[5, 40, 160])
    args = parser.parse_args()
    title, sections = document_files.sections_of(SOURCE.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LABMAKE_CACHE"] = str(Path(tmp) / "cache")
        print(f"{'format':6} {'size':>20} {'chars out':>10} {'uncached s':>11} {'cached s':>9}")
        for count in args.sections:
            many = tuple(sections[k % len(sections)] for k in range(count))
            for fmt in ("pdf", "docx", "html"):
                path = Path(tmp) / f"doc{count}.{fmt}"
                getattr(document_files, f"write_{fmt}")(path, title, many)
                data = path.read_bytes()
                started = time.perf_counter()
                converted = formats.convert(data, path.name)
                uncached = time.perf_counter() - started
                started = time.perf_counter()
                formats.convert(data, path.name)
                cached = time.perf_counter() - started
                size = f"{count} sections, {len(data) // 1024} KiB"
                if fmt == "pdf":
                    import pypdfium2

                    size = f"{len(pypdfium2.PdfDocument(data))} pages, {len(data) // 1024} KiB"
                print(
                    f"{fmt:6} {size:>20} {len(converted.text):>10} {uncached:>11.2f} "
                    f"{cached:>9.3f}   {len(converted.text) / uncached:,.0f} chars/s"
                )


if __name__ == "__main__":
    main()
