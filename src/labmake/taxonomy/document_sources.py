"""Where a leaf's git documents may come from: the operator's decision, not the contributor's.

A knowledge leaf may name a git repository (``document.repo``) whose files become training data.
A contributed leaf must not be able to make the build host's own files, or the private
network it sits in, part of a model: a local path, ``file://``, a loopback or private address,
or an intranet name would read what only the build host can reach. ``taxonomy.document_sources``
in params.yaml lists what the build may fetch; each entry is one of:

- ``public-https`` (the default): an ``https://`` URL of a public host -- a DNS name that is not
  ``localhost``, a single label or an intranet suffix (``.local``, ``.internal``, ...), or a
  global IP address. Before fetching, the name must also resolve to global addresses only
  (git resolves it again, and follows no redirect: see ``git_documents``).
- a URL prefix: ``https://git.example.org/docs/``, ``ssh://git@host/``, ``git@github.com:org/``;
  a repository whose URL starts with it, at a ``/`` or ``:`` boundary.
- a folder: ``/srv/documents``, or relative to the build's working folder (where params.yaml
  is); repositories inside it, named by path or by ``file://`` URL.

An empty list allows no git documents. Documents stored beside a qna.yaml are part of the
taxonomy and always allowed. Checking a source here never touches the network; only
:meth:`DocumentSources.resolve_refusal`, called right before a fetch, asks DNS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from labmake.core.config import PUBLIC_HTTPS, TaxonomyConfig

SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")  # ssh shorthand: git@host:owner/name.git
# Names that only mean something inside one network (RFC 6762, 8375, common practice).
_PRIVATE_SUFFIXES = (
    ".localhost",
    ".local",
    ".localdomain",
    ".internal",
    ".intranet",
    ".lan",
    ".home",
    ".corp",
    ".home.arpa",
)


@dataclass(frozen=True)
class DocumentSources:
    """The allowlist of params.yaml's ``taxonomy.document_sources``; ``base`` is the folder
    relative folder entries are read from (the build's working folder)."""

    entries: tuple[str, ...] = TaxonomyConfig().document_sources
    base: Path = Path(".")

    def refusal(self, source: str) -> str | None:
        """Why a repository may not be fetched, or None. ``source`` is a URL, an ssh
        shorthand, or an absolute local path (as git_documents resolved it)."""
        for entry in self.entries:
            if entry == PUBLIC_HTTPS:
                if _public_https(source):
                    return None
            elif _is_url(entry):
                if _url_prefix(entry, source):
                    return None
            elif _inside(self._folder(entry), _local_path(source)):
                return None
        allowed = ", ".join(self.entries) if self.entries else "nothing: the list is empty"
        return (
            f"{_describe(source)}, which taxonomy.document_sources in params.yaml does not "
            f"allow (it allows {allowed}); a contributed leaf may not read what only the build "
            "host can reach. Name a public https:// repository, or, if this source is "
            "trusted, the operator adds it to taxonomy.document_sources"
        )

    def resolve_refusal(self, source: str) -> str | None:
        """Right before a fetch: a host allowed only as ``public-https`` must resolve to global
        addresses (an explicitly listed prefix or folder is the operator's own choice)."""
        refused = self.refusal(source)
        if (
            refused is not None
            or DocumentSources(self._explicit(), self.base).refusal(source) is None
        ):
            return refused
        host = urlsplit(source).hostname or ""
        try:
            infos = socket.getaddrinfo(host, urlsplit(source).port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError):
            return None  # it does not resolve: git's own error will say so
        private = sorted({info[4][0] for info in infos if not _global_ip(info[4][0])})
        if not private:
            return None
        return (
            f"{host} resolves to {', '.join(private)}, a loopback or private address, which "
            "taxonomy.document_sources (public-https) does not allow; if this host is trusted, "
            "the operator lists its URL in taxonomy.document_sources"
        )

    def _explicit(self) -> tuple[str, ...]:
        """The entries the operator wrote out (prefixes, folders): trusted as they are."""
        return tuple(e for e in self.entries if e != PUBLIC_HTTPS)

    def _folder(self, entry: str) -> Path:
        path = Path(urlsplit(entry).path) if entry.lower().startswith("file://") else Path(entry)
        return (self.base / path.expanduser()).resolve()


def _is_url(text: str) -> bool:
    return "://" in text or bool(SCP_LIKE.match(text))


def _local_path(source: str) -> Path | None:
    """The folder a local source names (a path or a file:// URL), else None."""
    if source.lower().startswith("file://"):
        return Path(urlsplit(source).path).resolve()
    if _is_url(source):
        return None
    return Path(source).resolve()


def _inside(folder: Path, path: Path | None) -> bool:
    return path is not None and path.is_relative_to(folder)


def _url_prefix(entry: str, source: str) -> bool:
    """``source`` starts with ``entry`` at a boundary; scheme and host compared without case."""
    if entry.lower().startswith("file://"):
        return False  # a folder, compared as one
    entry, source = _normal(entry), _normal(source)
    if source == entry:
        return True
    return source.startswith(entry if entry.endswith(("/", ":")) else entry + "/")


def _normal(url: str) -> str:
    if "://" not in url:
        user_host, _, path = url.partition(":")
        return f"{user_host.lower()}:{path}"
    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{netloc.lower()}{slash}{path}"


def _public_https(source: str) -> bool:
    parts = urlsplit(source)
    return parts.scheme.lower() == "https" and public_host(parts.hostname or "")


def public_host(host: str) -> bool:
    """A host name or address that is public on its face (no DNS is asked)."""
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return False
    try:
        return _global_ip(host)
    except ValueError:
        pass
    if "." not in host or host == "localhost" or host.endswith(_PRIVATE_SUFFIXES):
        return False
    # Forms resolvers read as an address although ipaddress does not: 127.1, 0x7f.0.0.1.
    return not all(re.fullmatch(r"(0x[0-9a-f]+|\d+)", label) for label in host.split("."))


def _global_ip(text: str) -> bool:
    """Whether an address is global; ValueError when ``text`` is not an address."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_global) and not ip.is_multicast


def _describe(source: str) -> str:
    if source.lower().startswith("file://") or not _is_url(source):
        return f"{source!r} is a repository on the build host's own disk"
    parts = urlsplit(source) if "://" in source else None
    if parts is None:
        return f"{source!r} is an ssh repository"
    if parts.scheme.lower() != "https":
        return f"{source!r} uses {parts.scheme}://, not https://"
    return f"{source!r} is on a loopback, private or intranet host ({parts.hostname})"
