"""Knowledge documents as people have them: PDF, Word and HTML converted to the text the teacher
reads, cached by content, and every bad case a validation finding at the pattern's line."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest
from hostile import KNOWLEDGE_LEAF, knowledge, put

from document_files import write_docx, write_html, write_pdf, write_scanned_pdf
from labmake.core import artifacts
from labmake.taxonomy import formats
from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.git_documents import cache_key
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.seeds import leaf_record

WRITERS = {"pdf": write_pdf, "docx": write_docx, "html": write_html}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))


def leaf_with(tmp_path: Path, name: str, pattern: str | None = None) -> Path:
    put(tmp_path, KNOWLEDGE_LEAF, knowledge(f"document:\n  patterns: ['{pattern or name}']\n"))
    return tmp_path / KNOWLEDGE_LEAF / name


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_each_format_converts_with_its_headings_and_text(tmp_path: Path, fmt: str):
    path = WRITERS[fmt](tmp_path / f"doc.{fmt}")
    converted = formats.convert(path.read_bytes(), path.name)
    text = converted.text
    assert converted.format == fmt and converted.converter.endswith("(labmake r1)")
    assert text.startswith("# Lighthouses\n") and "\n## The Fresnel lens\n" in text
    assert "Augustin-Jean Fresnel designed a lens of glass prisms in the 1820s." in text
    assert "First-order lens" in text and "20 nautical miles" in text
    if fmt != "pdf":  # PDF has no tables, only text placed in columns
        assert "| First-order lens | 20 nautical miles |" in text
    assert "secret" not in text and "Footer" not in text and "Home" not in text


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_a_leaf_with_each_format_validates_and_its_seeds_record_the_converter(tmp_path, fmt):
    WRITERS[fmt](leaf_with(tmp_path, f"lighthouses.{fmt}"))
    assert [f for f in validate_leaf(tmp_path, KNOWLEDGE_LEAF) if f.level == "error"] == []
    record = leaf_record(load_leaf(tmp_path, KNOWLEDGE_LEAF), _seeds_cfg(), len)
    (document,) = record["documents"]
    assert document["format"] == fmt and document["name"] == f"lighthouses.{fmt}"
    expected = {"pdf": "pypdfium2", "docx": "mammoth", "html": "markdownify"}[fmt]
    assert document["converter"].startswith(expected)
    assert "Fresnel" in "".join(record["chunks"])


def _seeds_cfg():  # type: ignore[no-untyped-def]
    from labmake.core.config import SeedsConfig

    return SeedsConfig(chunk_tokens=200, chunk_overlap_tokens=20)


def error_at_pattern(tmp_path: Path) -> tuple[str, str]:
    (finding,) = [f for f in validate_leaf(tmp_path, KNOWLEDGE_LEAF) if f.level == "error"]
    assert finding.yaml_path == "document.patterns[0]" and finding.line is not None
    return finding.message, finding.hint


def test_a_scanned_pdf_is_named_with_what_to_do(tmp_path: Path):
    write_scanned_pdf(leaf_with(tmp_path, "scan.pdf"))
    message, hint = error_at_pattern(tmp_path)
    assert message == "document scan.pdf has no text layer (1 page(s) of images: a scan?)"
    assert "OCR" in hint


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.pdf", b"%PDF-1.7\nnot really", "document broken.pdf is not a readable PDF"),
        ("broken.docx", b"PK\x03\x04 not a zip", "document broken.docx is not a Word document"),
        (
            "empty.html",
            b"<html><body><script>x()</script></body></html>",
            "is empty once converted",
        ),
        ("latin.md", "caf\xe9\n".encode("latin-1"), "document latin.md is not valid UTF-8"),
    ],
)
def test_unreadable_documents_are_findings(tmp_path: Path, name: str, content: bytes, message):
    leaf_with(tmp_path, name).write_bytes(content)
    found, hint = error_at_pattern(tmp_path)
    assert message in found and hint


def test_a_zip_that_is_not_a_word_document(tmp_path: Path):
    with zipfile.ZipFile(leaf_with(tmp_path, "notes.docx"), "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert "has no word/document.xml" in error_at_pattern(tmp_path)[0]


def test_a_docx_that_inflates_past_the_cap_is_refused_unread(tmp_path: Path):
    with zipfile.ZipFile(leaf_with(tmp_path, "bomb.docx"), "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:document/>")
        with archive.open("word/media/zeros.bin", "w") as entry:
            for _ in range(260):
                entry.write(bytes(1 << 20))
    message, _ = error_at_pattern(tmp_path)
    assert "over the 268435456 byte limit" in message


def test_conversion_is_cached_by_content_and_converter(tmp_path: Path, monkeypatch):
    data = write_html(tmp_path / "a.html").read_bytes()
    first = formats.convert(data, "a.html")
    cached = list((artifacts.cache_root() / "documents").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith(first.source_sha256)

    def no_child(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("converted twice")

    monkeypatch.setattr(subprocess, "run", no_child)
    assert formats.convert(data, "b.html") == first  # same bytes, any name: the cache answers
    monkeypatch.undo()
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    formats.convert(data + b"<p>more</p>", "a.html")
    assert len(list((artifacts.cache_root() / "documents").iterdir())) == 2


def test_a_conversion_past_its_deadline_stops_with_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "CONVERT_TIMEOUT_S", 0.001)
    with pytest.raises(formats.ConversionError, match="took longer than"):
        formats.convert(write_html(tmp_path / "a.html").read_bytes(), "a.html")


def test_documents_longer_than_the_budget_warn_with_the_cost(tmp_path: Path):
    leaf_with(tmp_path, "long.md").write_text("word " * 60_000, encoding="utf-8")
    (finding,) = [
        f for f in validate_leaf(tmp_path, KNOWLEDGE_LEAF) if "teacher requests" in f.message
    ]
    assert finding.level == "warning" and "generate.knowledge.max_requests (240)" in finding.message
    assert "split the documents across leaves" in finding.hint


@pytest.mark.parametrize(
    "spelling",
    [
        "https://github.com/Acme/Docs.git",
        "https://github.com/Acme/Docs/",
        "https://GitHub.com/Acme/Docs",
        "HTTPS://github.com/Acme/Docs.git/",
    ],
)
def test_spellings_of_one_repository_share_one_cache(spelling: str):
    assert cache_key(spelling) == "https://github.com/Acme/Docs"


def test_a_local_repository_path_is_its_own_key():
    assert cache_key("/srv/docs.git") == "/srv/docs.git"
