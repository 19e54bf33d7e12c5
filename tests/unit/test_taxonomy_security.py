"""Hostile taxonomy files: one test per safety rule, each asserting the message a user sees."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from labmake.taxonomy import formats
from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.findings import Finding, TaxonomyError
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.scan import find_leaves

LEAF = "compositional_skills/writing/poems"
KLEAF = "knowledge/astronomy/planets"

SKILL = (
    "version: 3\ncreated_by: tester\ntask_description: Write a poem.\nseed_examples:\n"
    + "".join(f"  - question: Write poem {i}.\n    answer: Poem {i}.\n" for i in range(5))
)
KNOWLEDGE = (
    "version: 3\ncreated_by: tester\ndomain: astronomy\ndocument_outline: Planets.\n"
    "seed_examples:\n"
    + "".join(
        f"  - context: Planet {i} is round.\n    questions_and_answers:\n"
        + "".join(f"      - question: Q{i}{j}?\n        answer: A{i}{j}.\n" for j in range(3))
        for i in range(5)
    )
)


def put(root: Path, leaf: str, content: str | bytes) -> Path:
    folder = root / leaf
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qna.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def the_error(root: Path, leaf: str = LEAF) -> Finding:
    errors = [f for f in validate_leaf(root, leaf) if f.level == "error"]
    assert len(errors) == 1, errors
    assert errors[0].source != "internal", errors[0]
    return errors[0]


def with_patterns(*patterns: str) -> str:
    return KNOWLEDGE + "document:\n  patterns:\n" + "".join(f"    - '{p}'\n" for p in patterns)


# ------------------------------------------------------------------------ reading


def test_size_cap(tmp_path: Path) -> None:
    put(tmp_path, LEAF, "answer: " + "x" * (1 << 20) + "\n")
    f = the_error(tmp_path)
    assert f.source == "security"
    assert f.message == "qna.yaml is 1.0 MiB, over the 1.0 MiB limit"
    assert "move long text into documents" in f.hint


def test_document_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_TEXT_BYTES", 1024)
    put(tmp_path, KLEAF, with_patterns("*.md"))
    (tmp_path / KLEAF / "big.md").write_text("word " * 1000)
    f = the_error(tmp_path, KLEAF)
    assert f.message == "document big.md is 5 KiB, over the 1 KiB limit"


def test_non_utf8_file(tmp_path: Path) -> None:
    put(tmp_path, LEAF, "version: 3\ncreated_by: Jos\xe9\n".encode("latin-1"))
    f = the_error(tmp_path)
    assert f.message == "qna.yaml is not valid UTF-8 (byte 0xe9 at line 2, column 16)"
    assert (f.line, f.col) == (2, 16)
    assert "save it again as UTF-8" in f.hint


def test_utf16_file(tmp_path: Path) -> None:
    put(tmp_path, LEAF, SKILL.encode("utf-16"))
    f = the_error(tmp_path)
    assert f.message == "qna.yaml is saved as UTF-16, not UTF-8"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"version: 3\n\x00\x01\x02", "it contains NUL bytes"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"PK\x03\x04rest-of-a-docx", "a ZIP archive or Office document"),
    ],
)
def test_binary_file(tmp_path: Path, content: bytes, kind: str) -> None:
    put(tmp_path, LEAF, content)
    f = the_error(tmp_path)
    assert f.source == "security"
    assert f.message == f"qna.yaml is a binary file ({kind}), not text"


def test_binary_document(tmp_path: Path) -> None:
    put(tmp_path, KLEAF, with_patterns("*.md"))
    (tmp_path / KLEAF / "notes.md").write_bytes(b"\x89PNG\r\n\x1a\n")
    f = the_error(tmp_path, KLEAF)
    assert f.message == "document notes.md is a binary file (a PNG image), not text"


def test_not_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / LEAF).mkdir(parents=True)
    os.mkfifo(tmp_path / LEAF / "qna.yaml")  # reading it would block forever
    f = the_error(tmp_path)
    assert f.message == "qna.yaml is not a regular file"


# ------------------------------------------------------------------------ parsing


def test_python_tag_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    put(
        tmp_path,
        LEAF,
        SKILL.replace(
            "created_by: tester", f"created_by: !!python/object/apply:os.system ['touch {marker}']"
        ),
    )
    f = the_error(tmp_path)
    assert f.source == "security" and (f.line, f.col) == (2, 13)
    assert f.message == (
        "tag !!python/object/apply:os.system asks YAML to run Python code; "
        "taxonomy files may hold only data"
    )
    assert not marker.exists()


def test_unknown_tag(tmp_path: Path) -> None:
    put(tmp_path, LEAF, SKILL.replace("created_by: tester", "created_by: !include secrets.yaml"))
    assert the_error(tmp_path).message == "unknown YAML tag !include"


def test_alias_bomb_is_rejected_quickly(tmp_path: Path) -> None:
    lines = ["version: 3", "created_by: t", "task_description: t", 'l0: &l0 ["ha","ha","ha"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 12)]
    put(tmp_path, LEAF, "\n".join(lines + ["seed_examples: *l11", ""]))  # 3 * 10**11 strings
    started = time.monotonic()
    f = the_error(tmp_path)
    assert time.monotonic() - started < 2
    assert f.source == "security"
    assert f.message == "`*alias` references expand this file past 200,000 values (an alias bomb)"


def test_recursive_alias(tmp_path: Path) -> None:
    put(tmp_path, LEAF, "version: 3\ncreated_by: t\ntask_description: t\nseed_examples: &s [*s]\n")
    f = the_error(tmp_path)
    assert f.message == "an alias refers to a node that contains it (an endless structure)"
    assert f.line == 4


def test_deep_nesting(tmp_path: Path) -> None:
    put(tmp_path, LEAF, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert the_error(tmp_path).message == "the YAML is nested too deeply to read"


def test_invalid_date_is_located(tmp_path: Path) -> None:
    put(tmp_path, LEAF, SKILL.replace("created_by: tester", "created_by: 2024-13-45"))
    f = the_error(tmp_path)
    assert f.message.startswith("the value '2024-13-45' looks like a date or a number")
    assert (f.line, f.col) == (2, 13) and "quotes" in f.hint


# -------------------------------------------------------------------------- paths


def test_leaf_name_with_dotdot_escape(tmp_path: Path) -> None:
    put(tmp_path / "outside", "x", SKILL)
    root = tmp_path / "taxonomy"
    root.mkdir()
    f = the_error(root, "../outside/x")
    assert f.message == "leaf '../outside/x' is not a folder inside the taxonomy"
    with pytest.raises(TaxonomyError, match="not a folder inside the taxonomy"):
        load_leaf(root, "../outside/x")


def test_absolute_leaf_name(tmp_path: Path) -> None:
    put(tmp_path, LEAF, SKILL)
    f = the_error(tmp_path / "elsewhere", str(tmp_path / LEAF))
    assert "is not a folder inside the taxonomy" in f.message


def test_document_pattern_with_dotdot(tmp_path: Path) -> None:
    put(tmp_path, KLEAF, with_patterns("../../secret.md"))
    (tmp_path / "knowledge" / "secret.md").write_text("secret")
    f = the_error(tmp_path, KLEAF)
    assert f.source == "security" and f.yaml_path == "document.patterns[0]"
    assert f.message == "pattern '../../secret.md' climbs out of the leaf folder with '..'"


def test_document_absolute_pattern(tmp_path: Path) -> None:
    put(tmp_path, KLEAF, with_patterns("/etc/passwd"))
    f = the_error(tmp_path, KLEAF)
    assert f.message == "pattern '/etc/passwd' is an absolute path"
    assert "relative to the leaf folder" in f.hint


def test_qna_symlink_out_of_root(tmp_path: Path) -> None:
    outside = put(tmp_path / "outside", "x", SKILL)
    root = tmp_path / "taxonomy"
    (root / LEAF).mkdir(parents=True)
    (root / LEAF / "qna.yaml").symlink_to(outside)
    f = the_error(root)
    assert f.message == (
        "qna.yaml (or a folder above it) is a symlink that leads outside the taxonomy"
    )
    with pytest.raises(TaxonomyError, match="symlink leads outside the taxonomy"):
        find_leaves(root)


def test_document_symlink_out_of_root(tmp_path: Path) -> None:
    root = tmp_path / "taxonomy"
    put(root, KLEAF, with_patterns("*.md"))
    (tmp_path / "private.md").write_text("private text")
    (root / KLEAF / "doc.md").symlink_to(tmp_path / "private.md")
    f = the_error(root, KLEAF)
    assert f.message == "document doc.md is a symlink that leads outside the taxonomy"


def test_symlink_inside_root_is_fine(tmp_path: Path) -> None:
    put(tmp_path, KLEAF, with_patterns("*.md"))
    (tmp_path / "knowledge" / "shared.md").write_text("shared text")
    (tmp_path / KLEAF / "doc.md").symlink_to(tmp_path / "knowledge" / "shared.md")
    assert validate_leaf(tmp_path, KLEAF) == []


# ------------------------------------------------------------------ no code, no network


def test_validation_never_opens_a_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    doc = "document:\n  repo: https://example.invalid/r.git\n  commit: abc1234\n  patterns: ['a.md']\n"
    put(tmp_path, KLEAF, KNOWLEDGE + doc)
    assert validate_leaf(tmp_path, KLEAF) == []
