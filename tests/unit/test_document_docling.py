"""The docling converter (``seeds.converter: docling``, the ``docling`` extra): Word and HTML
need no model; PDF needs docling's models on disk and says so, never downloading them. Skipped
where docling is not installed (it is not in the default set-up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from document_files import write_docx, write_html, write_pdf
from labmake.taxonomy import formats

pytest.importorskip("docling")

DOCLING = formats.ConverterChoice("docling")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("writer", [write_docx, write_html])
def test_docling_converts_word_and_html_offline(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    path = writer(tmp_path / f"doc.{writer.__name__.removeprefix('write_')}")
    converted = formats.convert(path.read_bytes(), path.name, DOCLING)
    assert converted.converter.startswith("docling ")
    assert "## The Fresnel lens" in converted.text and "First-order lens" in converted.text
    builtin = formats.convert(path.read_bytes(), path.name)
    assert builtin.converter != converted.converter  # each converter has its own cache entry


def test_docling_pdf_without_models_says_where_to_put_them(tmp_path: Path) -> None:
    data = write_pdf(tmp_path / "doc.pdf").read_bytes()
    with pytest.raises(formats.ConversionError, match="needs docling's PDF models") as caught:
        formats.convert(data, "doc.pdf", DOCLING)
    assert "seeds.docling_models" in caught.value.hint
    empty = formats.ConverterChoice("docling", str(tmp_path / "no-models"))
    with pytest.raises(formats.ConversionError, match="cannot be converted by docling"):
        formats.convert(data, "doc.pdf", empty)
