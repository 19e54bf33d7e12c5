"""Knowledge documents: chunking by tokens, and the git form read at a pinned commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_taxonomy import knowledge, write

from labmake.core import artifacts
from labmake.core.config import SeedsConfig, StudentConfig, TeacherConfig
from labmake.taxonomy.chunking import chunk_tokens, gguf_token_counter
from labmake.taxonomy.document_sources import DocumentSources
from labmake.taxonomy.git_documents import DocumentError, glob_match, read_documents
from labmake.taxonomy.seeds import run as seeds_run

LEAF = "knowledge/astronomy/planets"
DOC = "\n".join(
    f"Planet number {k} has {k + 2} moons and a day of {k * 7 + 3} hours. "
    f"Its surface is mostly {['rock', 'ice', 'gas'][k % 3]}."
    for k in range(60)
)


def words(text: str) -> int:
    return len(text.split())


# ------------------------------------------------------------------------------ chunking


@pytest.mark.parametrize(("size", "overlap"), [(40, 0), (40, 8), (25, 24), (200, 30)])
def test_chunks_respect_the_budget_overlap_and_cover_the_text(size: int, overlap: int) -> None:
    chunks = chunk_tokens(DOC, words, size, overlap)
    assert all(words(c) <= size for c in chunks)
    source = DOC.split()
    # Each chunk is a run of the document's words; consecutive runs overlap by <= `overlap`
    # words, move forward, and together cover every word.
    position, covered_to = 0, 0
    for chunk in chunks:
        run = chunk.split()
        start = next(s for s in range(position, len(source)) if source[s : s + len(run)] == run)
        assert start > position or position == 0
        assert covered_to - start <= overlap and start <= covered_to
        position, covered_to = start, start + len(run)
    assert covered_to == len(source)
    assert chunks == chunk_tokens(DOC, words, size, overlap)


def test_chunks_keep_line_breaks_and_never_split_words() -> None:
    chunks = chunk_tokens(DOC, words, 30, 5)
    assert "\n" in chunks[0]
    vocabulary = set(DOC.split())
    assert all(set(c.split()) <= vocabulary for c in chunks)


def test_overlap_must_be_below_size() -> None:
    with pytest.raises(ValueError, match="chunk_overlap_tokens"):
        chunk_tokens(DOC, words, 10, 10)


def test_chunks_measured_with_a_real_tokenizer(tiny_tokenizer_gguf: Path) -> None:
    count = gguf_token_counter(tiny_tokenizer_gguf)
    chunks = chunk_tokens(DOC, count, 64, 16)
    assert len(chunks) > 3
    assert all(count(c) <= 64 for c in chunks)
    # A budget in tokens, not words: the tokenizer splits these words into several pieces.
    assert max(words(c) for c in chunks) < 64


# ------------------------------------------------------------------------ git documents


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
        "HOME": str(cwd), "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def docs_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """A bare repository with two commits: (path, first commit, second commit)."""
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "docs").mkdir()
    (work / "docs" / "planets.md").write_text(DOC, encoding="utf-8")
    (work / "docs" / "notes.txt").write_text("Saturn has rings made of ice.\n", encoding="utf-8")
    (work / "README.md").write_text("A repository of documents.\n", encoding="utf-8")
    (work / "docs" / "image.png").write_bytes(b"\x89PNG\0\0")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "first")
    first = git(work, "rev-parse", "HEAD")
    (work / "docs" / "planets.md").write_text("Rewritten: nothing about moons.\n", encoding="utf-8")
    git(work, "commit", "-q", "-am", "second")
    second = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "docs.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare, first, second


def git_leaf(root: Path, repo: str, commit: str, patterns: str = "'docs/*.md'") -> Path:
    document = f"document:\n  repo: {repo}\n  commit: {commit}\n  patterns:\n    - {patterns}\n"
    return write(root, LEAF, knowledge(document))


def trusting(folder: Path) -> DocumentSources:
    """The allowlist of an operator who trusts the repositories in ``folder`` (the fixtures'
    bare repositories live on local disk, which the default allowlist refuses)."""
    return DocumentSources((str(folder),))


def build_seeds(root: Path, gguf: Path, out: Path) -> dict:
    seeds_run(
        root, LEAF, SeedsConfig(chunk_tokens=64, chunk_overlap_tokens=8),
        TeacherConfig(gguf=str(gguf)), StudentConfig(), out, trusting(root.parent),
    )  # fmt: skip
    return artifacts.read_json(out)


def test_git_documents_are_read_at_the_pinned_commit_and_cached(
    tmp_path: Path, docs_repo: tuple[Path, str, str], tiny_tokenizer_gguf: Path
) -> None:
    bare, first, second = docs_repo
    root = tmp_path / "taxonomy"
    git_leaf(root, str(bare), first)
    record = build_seeds(root, tiny_tokenizer_gguf, tmp_path / "seeds.json")
    assert [d["name"] for d in record["documents"]] == ["docs/planets.md"]
    assert record["documents"][0]["commit"] == first
    assert "moons" in " ".join(record["chunks"]) and len(record["chunks"]) > 3
    # The first commit's text, although the branch has moved on since.
    assert not any("Rewritten" in c for c in record["chunks"])
    # Cached by commit: with the repository gone, a rebuild still reads the same documents.
    bare.rename(tmp_path / "gone.git")
    again = build_seeds(root, tiny_tokenizer_gguf, tmp_path / "seeds2.json")
    assert again == record
    # The other commit is not in the cache and cannot be fetched any more: a clear error.
    git_leaf(root, str(bare), second)
    with pytest.raises(DocumentError, match="neither a URL nor an existing path"):
        build_seeds(root, tiny_tokenizer_gguf, tmp_path / "seeds3.json")


def test_abbreviated_commit_ids_resolve_to_the_full_id(
    tmp_path: Path, docs_repo: tuple[Path, str, str]
) -> None:
    bare, first, _ = docs_repo
    (doc,) = read_documents(
        tmp_path / "qna.yaml", str(bare), first[:7].upper(), ["docs/*.md"], trusting(tmp_path)
    )
    assert doc.commit == first and doc.text == DOC


def test_git_documents_from_a_file_url_and_relative_path(
    tmp_path: Path, docs_repo: tuple[Path, str, str]
) -> None:
    bare, first, second = docs_repo
    qna = git_leaf(tmp_path / "taxonomy", f"file://{bare}", second)
    (doc,) = read_documents(qna, f"file://{bare}", second, ["docs/*.md"], trusting(tmp_path))
    assert doc.text.startswith("Rewritten")
    relative = Path("../../../../docs.git")
    assert (qna.parent / relative).resolve() == bare
    docs = read_documents(qna, str(relative), first, ["docs/*.txt", "**/*.md"], trusting(tmp_path))
    assert [d.name for d in docs] == ["README.md", "docs/notes.txt", "docs/planets.md"]
    assert docs[2].text == DOC


@pytest.mark.parametrize(
    ("commit", "patterns", "message"),
    [
        ("main", ["docs/*.md"], "not a commit id"),
        ("abc", ["docs/*.md"], "not a commit id"),  # under 4 characters
        ("v1.0", ["docs/*.md"], "not a commit id"),
        ("0" * 40, ["docs/*.md"], "is not in"),
        ("FIRST", ["*.rst"], "matches no file"),
        ("FIRST", ["docs/*"], "not a document format labmake reads"),
        ("FIRST", ["../*.md"], "climbs out"),
    ],
)
def test_git_document_errors_name_the_file_and_fix(
    tmp_path: Path, docs_repo: tuple[Path, str, str], commit: str, patterns: list[str], message: str
) -> None:
    bare, first, _ = docs_repo
    commit = commit.replace("FIRST", first)
    qna = tmp_path / "qna.yaml"
    with pytest.raises(DocumentError, match=message) as caught:
        read_documents(qna, str(bare), commit, patterns, trusting(tmp_path))
    assert str(caught.value).startswith(str(qna))


@pytest.mark.parametrize(
    "repo", ["ext::sh -c touch% /tmp/pwned", "-uhack", "fd::3", "gopher://example.org/x"]
)
def test_git_repo_cannot_run_commands(tmp_path: Path, repo: str) -> None:
    with pytest.raises(DocumentError, match="document.repo"):
        read_documents(tmp_path / "qna.yaml", repo, "a" * 40, ["*.md"])
    assert not Path("/tmp/pwned").exists()


def test_symlink_in_the_repository_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "secret.md").symlink_to("/etc/passwd")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "link")
    commit = git(work, "rev-parse", "HEAD")
    with pytest.raises(DocumentError, match="symlink"):
        read_documents(tmp_path / "qna.yaml", str(work), commit, ["*.md"], trusting(tmp_path))


def test_glob_match() -> None:
    assert glob_match("docs/a.md", "docs/*.md")
    assert not glob_match("docs/sub/a.md", "docs/*.md")
    assert glob_match("docs/sub/a.md", "docs/**/*.md")
    assert glob_match("docs/a.md", "docs/**/*.md")
    assert not glob_match("a.md", "docs/*.md")


def test_validate_warns_of_a_branch_name_commit(tmp_path: Path) -> None:
    from labmake.taxonomy.check import validate_leaf

    document = "document:\n  repo: https://example.org/docs.git\n  commit: main\n  patterns:\n"
    write(tmp_path, LEAF, knowledge(document + "    - '*.md'\n"))
    (finding,) = validate_leaf(tmp_path, LEAF)
    assert finding.level == "warning" and "not a commit id" in finding.message
    assert "git rev-parse" in finding.hint
    (strict,) = validate_leaf(tmp_path, LEAF, strict_limits=True)
    assert strict.level == "error"
    write(tmp_path, LEAF, knowledge(document.replace("main", "a1b2c3d") + "    - '*.md'\n"))
    assert validate_leaf(tmp_path, LEAF) == []


# --------------------------------------------------------- validation reads git documents


def _validate(root: Path, folder: Path, git_documents: str) -> list:  # type: ignore[type-arg]
    from labmake.taxonomy.check import CheckMode, check_leaf

    mode = CheckMode(sources=trusting(folder), git_documents=git_documents)
    return check_leaf(root, LEAF, mode).findings


def test_validation_reads_git_documents_in_every_format(tmp_path: Path, monkeypatch) -> None:
    from document_files import write_pdf, write_scanned_pdf

    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    work = tmp_path / "repo"
    (work / "docs").mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    write_pdf(work / "docs" / "manual.pdf")
    write_scanned_pdf(work / "docs" / "scan.pdf")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "docs")
    commit = git(work, "rev-parse", "HEAD")
    root = tmp_path / "taxonomy"
    git_leaf(root, str(work), commit, "'docs/manual.pdf'\n    - 'docs/*.pdf'")
    # Offline, with nothing cached: a warning that says the build will need the repository.
    (offline,) = _validate(root, tmp_path, "cache")
    assert offline.level == "warning" and offline.yaml_path == "document.repo"
    assert "cannot check the documents" in offline.message and "--offline" in offline.message
    # Fetched: the scanned PDF the second pattern matches is an error at that pattern's line.
    (scan,) = _validate(root, tmp_path, "fetch")
    assert scan.level == "error" and scan.yaml_path == "document.patterns[1]"
    assert "docs/scan.pdf has no text layer" in scan.message and "OCR" in scan.hint
    # Now cached: offline validation reads it too.
    assert [f.message for f in _validate(root, tmp_path, "cache")] == [scan.message]
    git_leaf(root, str(work), commit, "'docs/manual.pdf'")
    assert _validate(root, tmp_path, "cache") == []


def test_a_git_pattern_that_matches_nothing_is_found_by_validation(
    tmp_path: Path, docs_repo: tuple[Path, str, str]
) -> None:
    bare, first, _ = docs_repo
    root = tmp_path / "taxonomy"
    git_leaf(root, str(bare), first, "'docs/*.md'\n    - 'guides/*.pdf'")
    (finding,) = _validate(root, tmp_path, "fetch")
    assert finding.level == "error" and finding.yaml_path == "document.patterns[1]"
    assert "'guides/*.pdf' matches no file" in finding.message and "globs" in finding.hint
