"""Knowledge documents named by ``document: {repo, commit, patterns}`` (InstructLab's form).

The repository is read at exactly ``commit``: a full object name, never a branch or tag, since
those move and the same taxonomy would then build different data. Each repository is mirrored
once into a bare cache repository (``$LABMAKE_CACHE/git``, default ``~/.cache/labmake/git``),
and a commit already there is read from it without touching the network, so a rebuild never
clones again. Files are read straight from git's object store (``git ls-tree``/``git cat-file``):
nothing is checked out, no hook or filter runs, and symlinks in the repository are refused.

Only this module runs git for documents (through :func:`labmake.core.git.run_git`), and only
with the transports in ``_ALLOWED_PROTOCOLS`` (git's ``ext::`` transport would run a command
named in the taxonomy). Which repositories may be read at all is params.yaml's
``taxonomy.document_sources`` (:mod:`labmake.taxonomy.document_sources`), checked before the
cache or the network is touched; git follows no HTTP redirect, so an allowed host cannot send
the fetch elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

from labmake.core import artifacts
from labmake.core.git import GitError, run_git
from labmake.taxonomy import formats
from labmake.taxonomy.document_sources import SCP_LIKE, DocumentSources
from labmake.taxonomy.documents import pattern_problem

# A full id (sha1 or sha256 repositories) or an abbreviation of one: real taxonomies use both.
COMMIT_ID = re.compile(r"^[0-9a-f]{4,64}$")  # git abbreviates to 4 characters at least
_FULL_LENGTHS = (40, 64)
_ALLOWED_PROTOCOLS = "file:git:http:https:ssh"
_SCP_LIKE = SCP_LIKE
_GIT_TIMEOUT_S = 600
# An allowed https host must not redirect the fetch to one document_sources would refuse.
_NO_REDIRECTS = ("-c", "http.followRedirects=false")


class DocumentError(ValueError):
    """A git document cannot be read; the message names the qna.yaml and the fix.
    ``data_path``: the key of the qna.yaml it is about."""

    def __init__(self, message: str, data_path: tuple[Any, ...] = ("document",)) -> None:
        super().__init__(message)
        self.data_path = data_path


class UnreachableError(DocumentError):
    """The repository cannot be reached (no network, no credentials, or offline by choice)."""


@dataclass(frozen=True)
class Document:
    name: str  # repository-relative POSIX path
    commit: str  # the full id it was read at
    converted: formats.Converted

    @property
    def text(self) -> str:
        return self.converted.text


def cache_root() -> Path:
    return artifacts.cache_root() / "git"


def read_documents(
    qna_path: Path,
    repo: str,
    commit: str,
    patterns: list[str] | tuple[str, ...],
    sources: DocumentSources | None = None,
    *,
    fetch: bool = True,
    choice: formats.ConverterChoice = formats.BUILTIN,
) -> list[Document]:
    """The documents ``patterns`` match in ``repo`` at ``commit``, sorted by path, if
    ``sources`` (default: public https repositories only) allows the repository. With
    ``fetch`` False, only the cache is read (:class:`UnreachableError` if it lacks the commit)."""
    where = f"{qna_path}: document"
    sources = sources if sources is not None else DocumentSources()
    commit = commit.strip().lower()
    source = _allowed_source(qna_path, repo, commit, patterns, sources)
    mirror = _mirror(source)
    full = _resolve(mirror, commit, where)
    if full is None:
        if not _is_url(source) and not Path(source).exists():
            raise DocumentError(
                f"{where}.repo {repo!r} is neither a URL nor an existing path (looked at "
                f"{source}); write the repository's URL or the path to a clone of it"
            )
        refused = sources.resolve_refusal(source)
        if refused is not None:
            raise DocumentError(f"{where}.repo: {refused}")
        if not fetch:
            raise UnreachableError(
                f"{where}.repo: commit {commit[:12]} of {repo} is not in labmake's git cache "
                "and fetching is off (--offline)"
            )
        _fetch(mirror, source, commit, where)
        full = _resolve(mirror, commit, where)
        if full is None:
            raise DocumentError(
                f"{where}.commit {commit} is not in {repo}; check the id (it may be in a fork "
                "or was force-pushed away) and that document.repo names the right repository"
            )
    return _matched_documents(mirror, full, repo, patterns, where, choice)


def _matched_documents(
    mirror: Path,
    commit: str,
    repo: str,
    patterns: list[str] | tuple[str, ...],
    where: str,
    choice: formats.ConverterChoice,
) -> list[Document]:
    """Each file a pattern matches at ``commit``, once, read and converted, sorted by path; a
    problem is a :class:`DocumentError` at the pattern that named the file."""
    entries = _tree(mirror, commit)
    documents: list[Document] = []
    seen: set[str] = set()
    for k, pattern in enumerate(patterns):
        matches = sorted(path for path in entries if glob_match(path, pattern))
        if not matches:
            raise DocumentError(
                f"{where}.patterns: {pattern!r} matches no file of {repo} at {commit[:12]}; "
                "patterns are globs from the repository's root, such as docs/*.md",
                ("document", "patterns", k),
            )
        for path in (p for p in matches if p not in seen):
            seen.add(path)
            try:
                documents.append(_document(mirror, commit, path, entries[path], where, choice))
            except DocumentError as exc:
                exc.data_path = ("document", "patterns", k)
                raise
    return sorted(documents, key=lambda d: d.name)


def _allowed_source(
    qna_path: Path,
    repo: str,
    commit: str,
    patterns: list[str] | tuple[str, ...],
    sources: DocumentSources,
) -> str:
    """The repository's source, once the patterns, the commit and ``sources`` allow reading it
    (before the cache or the network is touched)."""
    where = f"{qna_path}: document"
    for pattern in patterns:
        problem = pattern_problem(pattern)
        if problem:
            raise DocumentError(f"{where}.patterns: {problem[0]}; {problem[1]}")
    if not COMMIT_ID.match(commit):
        raise DocumentError(
            f"{where}.commit is {commit!r}, which is not a commit id; a branch or tag moves, and "
            "the same taxonomy would then build different data. Write the commit's id "
            "(git rev-parse <branch> prints it)"
        )
    source = source_of(qna_path, repo)
    refused = sources.refusal(source)
    if refused is not None:
        raise DocumentError(f"{where}.repo: {refused}")
    return source


def glob_match(path: str, pattern: str) -> bool:
    """Shell-style glob over ``/``-separated paths: ``*`` stays in one folder, ``**`` spans any."""
    return _match(PurePosixPath(path).parts, PurePosixPath(pattern).parts)


def _match(parts: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(parts[k:], pattern[1:]) for k in range(len(parts) + 1))
    return bool(parts) and fnmatchcase(parts[0], pattern[0]) and _match(parts[1:], pattern[1:])


def source_of(qna_path: Path, repo: str) -> str:
    """A URL git can fetch from; a local path is taken relative to the qna.yaml's folder."""
    repo = repo.strip()
    if repo.startswith("-"):
        raise DocumentError(f"{qna_path}: document.repo {repo!r} looks like a command-line option")
    if "://" in repo:
        scheme = repo.split("://", 1)[0].lower()
        if scheme not in _ALLOWED_PROTOCOLS.split(":"):
            raise DocumentError(
                f"{qna_path}: document.repo uses the {scheme!r} transport; use https://, ssh://, "
                "git:// or a local path"
            )
        return repo
    if _SCP_LIKE.match(repo):
        return repo
    if "::" in repo:
        raise DocumentError(
            f"{qna_path}: document.repo {repo!r} names a git remote helper; use https://, "
            "ssh://, git:// or a local path"
        )
    # A local path need not exist while its commit is in the cache (checked before fetching).
    return str((qna_path.parent / repo).resolve())


def _is_url(source: str) -> bool:
    return "://" in source or bool(_SCP_LIKE.match(source))


def cache_key(source: str) -> str:
    """One key for the spellings of a remote repository: with or without ``.git``, a trailing
    slash, or upper-case letters in the scheme and host. A local path is keyed as it is."""
    if not _is_url(source):
        return source
    key = source.rstrip("/")
    key = key.removesuffix(".git").rstrip("/")
    if "://" in key:
        scheme, rest = key.split("://", 1)
        host, slash, path = rest.partition("/")
        key = f"{scheme.lower()}://{host.lower()}{slash}{path}"
    return key


def _mirror(source: str) -> Path:
    key = hashlib.sha256(cache_key(source).encode("utf-8")).hexdigest()[:24]
    mirror = cache_root() / f"{key}.git"
    if not (mirror / "HEAD").exists():
        tmp = mirror.with_name(mirror.name + f".tmp{os.getpid()}")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        _git(["init", "--quiet", "--bare", str(tmp)], None, f"cannot create {mirror}")
        (tmp / "labmake-source").write_text(source + "\n", encoding="utf-8")
        try:
            os.replace(tmp, mirror)
        except OSError:  # another job made it first
            _remove_tree(tmp)
    return mirror


def _resolve(mirror: Path, commit: str, where: str) -> str | None:
    """The full id of ``commit`` if the mirror has it; an ambiguous abbreviation is an error."""
    result = _run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{commit}^{{commit}}"],
        mirror,
        "cannot look up the commit",
    )
    if result.returncode == 0:
        return result.stdout.strip()
    if "ambiguous" in result.stderr:
        raise DocumentError(
            f"{where}.commit {commit} is ambiguous in that repository; write the full id"
        )
    return None


def _fetch(mirror: Path, source: str, commit: str, where: str) -> None:
    ref = f"refs/labmake/{commit}"  # a ref keeps the fetched objects safe from git gc
    # Most servers hand out a reachable commit by its full id (GitHub, GitLab, local
    # repositories); an abbreviation, or a server that refuses, needs every branch and tag.
    by_id_error = ""
    if len(commit) in _FULL_LENGTHS:
        by_id = _run(
            [*_NO_REDIRECTS, "fetch", "--quiet", "--no-tags", "--depth=1", "--", source]
            + [f"{commit}:{ref}"],
            mirror,
            "cannot fetch",
        )
        if by_id.returncode == 0:
            return
        by_id_error = by_id.stderr
    everything = _run(
        [*_NO_REDIRECTS, "fetch", "--quiet", "--", source, "+refs/heads/*:refs/heads/*"]
        + ["+refs/tags/*:refs/tags/*"],
        mirror,
        "cannot fetch",
    )
    if everything.returncode != 0:
        detail = (everything.stderr or by_id_error).strip().splitlines()
        raise UnreachableError(
            f"{where}.repo: git could not fetch {source} ({detail[-1] if detail else 'no detail'}); "
            "check the URL, your network and your credentials for that host"
        )


def _tree(mirror: Path, commit: str) -> dict[str, tuple[str, str]]:
    out = _git(["ls-tree", "-r", "-z", "--full-tree", commit], mirror, "cannot list the commit")
    entries: dict[str, tuple[str, str]] = {}
    for line in out.split("\0"):
        if not line:
            continue
        meta, path = line.split("\t", 1)
        mode, kind, object_id = meta.split()
        if kind == "blob":
            entries[path] = (mode, object_id)
    return entries


def _document(
    mirror: Path,
    commit: str,
    path: str,
    entry: tuple[str, str],
    where: str,
    choice: formats.ConverterChoice,
) -> Document:
    mode, object_id = entry
    if mode == "120000":
        raise DocumentError(
            f"{where}: {path} is a symlink in the repository; name the file it points to instead"
        )
    if formats.format_of(path) is None:
        raise DocumentError(
            f"{where}.patterns match {path}, which is not a document format labmake reads; "
            f"{formats.FORMATS_HINT}: narrow the pattern (e.g. *.md)"
        )
    size = int(_git(["cat-file", "-s", object_id], mirror, "cannot read").strip())
    limit = formats.max_bytes(path)
    if size > limit:
        raise DocumentError(
            f"{where}: {path} is {size} bytes, over the {limit} byte limit; "
            "split it into smaller documents"
        )
    data = _run(["cat-file", "blob", object_id], mirror, "cannot read", text=False).stdout
    try:
        converted = formats.convert(data, path, choice)
    except formats.ConversionError as exc:
        raise DocumentError(f"{where}: {exc.message}; {exc.hint}") from None
    return Document(name=path, commit=commit, converted=converted)


def _run(
    args: list[str], cwd: Path | None, what: str, *, text: bool = True
) -> subprocess.CompletedProcess[Any]:
    """git in ``cwd`` with the safe environment; git that cannot run is a :class:`DocumentError`."""
    try:
        return run_git(*args, cwd=cwd, env=_env(), timeout=_GIT_TIMEOUT_S, text=text)
    except GitError as exc:
        raise DocumentError(f"git: {what}: {exc}") from None


def _git(args: list[str], cwd: Path | None, what: str) -> str:
    result = _run(args, cwd, what)
    if result.returncode != 0:
        raise DocumentError(f"git: {what}: {result.stderr.strip()}")
    return result.stdout


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GIT_ALLOW_PROTOCOL=_ALLOWED_PROTOCOLS,
        GIT_TERMINAL_PROMPT="0",  # a private repository fails instead of waiting for a password
        GIT_CONFIG_NOSYSTEM="1",
        LC_ALL="C",
    )
    return env


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
