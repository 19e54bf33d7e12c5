"""Where documents may come from is the operator's decision (taxonomy.document_sources).

A contributed leaf naming a local path, ``file://``, a loopback or private address or an
intranet host is refused by `plan` and the build before anything is fetched, and reported by
`validate`; listing the source in params.yaml lets it through.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hostile import KNOWLEDGE_LEAF, REPO, git_document, knowledge, project, put

from labmake.cli.plan import run_plan
from labmake.cli.validate import run_validate
from labmake.core import config
from labmake.taxonomy import git_documents
from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.document_sources import DocumentSources, public_host
from labmake.taxonomy.git_documents import DocumentError, read_documents

REFUSED_BY_DEFAULT = [
    "/srv/private/docs.git",
    "file:///srv/private/docs.git",
    "http://127.0.0.1:9418/docs.git",
    "http://github.com/owner/docs.git",  # public, but not https
    "https://127.0.0.1/docs.git",
    "https://10.0.0.5/docs.git",
    "https://192.168.1.20/docs.git",
    "https://169.254.169.254/latest/meta-data",  # a cloud's metadata service
    "https://[::1]/docs.git",
    "https://[::ffff:127.0.0.1]/docs.git",
    "https://localhost/docs.git",
    "https://git.localhost/docs.git",
    "https://gitlab.corp.internal/docs.git",
    "https://printer.local/docs.git",
    "https://gitlab/docs.git",  # a single label: an intranet name
    "https://2130706433/docs.git",  # 127.0.0.1 written as one number
    "https://0x7f.0.0.1/docs.git",
    "git@github.com:owner/docs.git",  # ssh: the build host's own keys
    "ssh://git@github.com/owner/docs.git",
]


@pytest.mark.parametrize("source", REFUSED_BY_DEFAULT)
def test_the_default_allows_only_public_https(source: str):
    why = DocumentSources().refusal(source)
    assert why is not None and "taxonomy.document_sources" in why


@pytest.mark.parametrize(
    "source", ["https://github.com/instructlab/taxonomy.git", "https://8.8.8.8/docs.git"]
)
def test_public_https_repositories_pass(source: str):
    assert DocumentSources().refusal(source) is None


def test_listed_sources_pass_and_nothing_beside_them(tmp_path: Path):
    sources = DocumentSources(
        ("docs", "https://git.example.org/team", "git@github.com:acme/"), base=tmp_path
    )
    assert sources.refusal(str(tmp_path / "docs" / "a.git")) is None
    assert sources.refusal(f"file://{tmp_path}/docs/sub/b.git") is None
    assert sources.refusal("https://GIT.example.org/team/x.git") is None
    assert sources.refusal("git@github.com:acme/x.git") is None
    for outside in (
        str(tmp_path / "docs-other" / "a.git"),
        str(tmp_path / "docs" / ".." / "secret.git"),
        "https://git.example.org/team-evil/x.git",
        "https://git.example.org.evil.net/team/x.git",
        "git@github.com:acme-evil/x.git",
        "https://github.com/anyone/x.git",  # public-https is not in this list
    ):
        assert sources.refusal(outside) is not None, outside
    assert DocumentSources(()).refusal("https://github.com/a/b.git") is not None


def test_host_checks_need_no_network(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    assert public_host("github.com") and not public_host("localhost")
    assert DocumentSources().refusal("https://10.1.1.1/x.git") is not None


def _no_network(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("a source check asked DNS")


def _bare_repo(tmp_path: Path) -> Path:
    import subprocess

    work = tmp_path / "private"
    work.mkdir()
    (work / "secret.md").write_text("the build host's private notes\n", encoding="utf-8")
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@x", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)
    return work


def test_a_local_repository_is_never_read_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    work = _bare_repo(tmp_path)
    for repo in (str(work), f"file://{work}", "../../../../private"):
        with pytest.raises(DocumentError, match="taxonomy.document_sources") as caught:
            read_documents(
                tmp_path / "t" / "knowledge" / "x" / "qna.yaml", repo, "a" * 40, ["*.md"]
            )
        assert "\n" not in str(caught.value)
    assert not (tmp_path / "cache").exists()  # nothing was mirrored, nothing fetched


def test_a_public_name_that_resolves_to_a_private_address_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))

    def resolve(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", 443))]

    def no_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("fetched from a private address")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(git_documents, "_fetch", no_fetch)
    with pytest.raises(DocumentError, match=r"resolves to 10\.20\.30\.40"):
        read_documents(tmp_path / "qna.yaml", "https://docs.example.com/r.git", "a" * 40, ["*.md"])
    # A host the operator listed is their own choice, wherever it resolves.
    listed = DocumentSources(("public-https", "https://docs.example.com/"))
    assert listed.resolve_refusal("https://docs.example.com/r.git") is None


def test_fetches_follow_no_redirect(tmp_path, monkeypatch):
    seen: list[list[str]] = []

    def record(args, cwd, what, *, text=True):  # type: ignore[no-untyped-def]
        seen.append(args)
        raise DocumentError("stop here")

    monkeypatch.setattr(git_documents, "_run", record)
    with pytest.raises(DocumentError):
        git_documents._fetch(tmp_path, "https://github.com/a/b.git", "a" * 40, "w")
    assert seen[0][:2] == ["-c", "http.followRedirects=false"]


# ------------------------------------------------------------------------------- validate


def test_validate_reports_the_source_and_strict_limits_make_it_an_error(tmp_path: Path):
    put(tmp_path, KNOWLEDGE_LEAF, knowledge(git_document("file:///home/me/private.git")))
    (finding,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert finding.level == "warning" and finding.yaml_path == "document.repo"
    assert "taxonomy.document_sources" in finding.message and finding.source == "security"
    (strict,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF, strict_limits=True)
    assert strict.level == "error"


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("../../etc/passwd", "climbs out of the leaf folder"),
        ("/../../etc/passwd", "is an absolute path"),
        ("docs\\..\\x.md", "uses backslashes"),
    ],
)
def test_validate_checks_git_patterns_as_it_checks_local_ones(tmp_path, pattern, message):
    document = git_document("https://github.com/acme/docs.git", ("docs/*.md", pattern))
    put(tmp_path, KNOWLEDGE_LEAF, knowledge(document))
    (finding,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert finding.level == "error" and finding.source == "security"
    assert message in finding.message and finding.yaml_path == "document.patterns[1]"


def test_a_git_pattern_from_the_root_warns_as_the_reference_accepts_it(tmp_path):
    document = git_document("https://github.com/acme/docs.git", ("/doc/guide/*.md",))
    put(tmp_path, KNOWLEDGE_LEAF, knowledge(document))
    (finding,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF)
    assert finding.level == "warning" and "drop the leading '/': doc/guide/*.md" in finding.hint
    (strict,) = validate_leaf(tmp_path, KNOWLEDGE_LEAF, strict_limits=True)
    assert strict.level == "error"


def test_validate_reads_the_allowlist_from_params(tmp_path: Path, capsys):
    leaves = {KNOWLEDGE_LEAF: knowledge(git_document(str(tmp_path / "mirrors" / "docs.git")))}
    params = project(tmp_path, leaves)
    args = dict(ilab_strict=False, fmt="text", params_path=params, strict_limits=True)
    assert run_validate([], **args) == 1
    assert "taxonomy.document_sources" in capsys.readouterr().out
    params = project(tmp_path, leaves, taxonomy={"document_sources": ["mirrors"]})
    # Allowed now, validation goes on to read the documents: that repository does not exist.
    assert run_validate([], **args) == 1
    out = capsys.readouterr().out
    assert "taxonomy.document_sources" not in out
    assert "is neither a URL nor an existing path" in out


def test_plan_refuses_a_local_repository_and_fetches_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LABMAKE_CACHE", str(tmp_path / "cache"))
    work = _bare_repo(tmp_path)
    params = project(tmp_path, {KNOWLEDGE_LEAF: knowledge(git_document(f"file://{work}"))})
    assert run_plan(params, build_dir=tmp_path / "build") == 1
    out, err = capsys.readouterr()
    assert "cannot estimate" in out and "taxonomy.document_sources" in out
    assert "could not be priced" in err
    assert not (tmp_path / "cache").exists()


def test_params_declare_the_allowlist():
    assert config.TaxonomyConfig().document_sources == (config.PUBLIC_HTTPS,)
    assert DocumentSources().entries == (config.PUBLIC_HTTPS,)
    assert config.load(REPO / "params.yaml").taxonomy.document_sources == ("public-https",)
    with pytest.raises(config.ConfigError, match="taxonomy.document_sources"):
        config.validate({**_params(), "taxonomy": {"document_sources": [""]}})


def _params() -> dict:
    from hostile import repo_params

    return repo_params()
