"""The toolchain as an input of the build: what is installed, against what the lock pins.

``requirements.lock`` (written by ``make lock``) pins every package ``make setup`` installs, with
hashes and environment markers; ``requirements-torch.txt`` pins torch, which stays out of the lock
because its build (CPU or CUDA) is the site's choice. This module reads both, compares them with
the running interpreter's installed distributions, and names the versions that go into every
model's provenance. It imports nothing heavy: ``labmake toolchain check`` runs in a blink.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

LOCK = "requirements.lock"
TORCH_PIN = "requirements-torch.txt"
# The packages whose versions decide a model's bytes, in the order provenance lists them.
PROVENANCE_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "llama-cpp-python",
    "gguf",
    "snakemake",
    "dvc",
)
# Installed but never pinned: the project itself and the venv's own installer.
UNPINNED = frozenset({"labmake", "pip"})
FIX = "make setup"
_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


class ToolchainError(ValueError):
    """A lock file labmake cannot read."""


@dataclass(frozen=True)
class Pin:
    name: str  # canonical (PEP 503) name
    version: str


@dataclass(frozen=True)
class Difference:
    name: str
    locked: str | None  # None: installed, not in the lock
    installed: str | None  # None: in the lock, not installed

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.name}: not installed (the lock pins {self.locked})"
        if self.locked is None:
            return f"{self.name} {self.installed}: installed, not in the lock"
        return f"{self.name}: {self.installed} installed, the lock pins {self.locked}"


def parse_lock(text: str, source: str = LOCK) -> list[Pin]:
    """The pins of a lock that apply to this interpreter (their markers evaluated here)."""
    pins = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line[0] in " #\t-":
            continue
        match = _ENTRY.match(line)
        if match is None:
            raise ToolchainError(f"{source}:{number}: not a `name==version` pin: {line[:80]!r}")
        name, version, marker = match.groups()
        try:
            applies = marker is None or Marker(marker).evaluate()
        except InvalidMarker as exc:
            raise ToolchainError(f"{source}:{number}: bad environment marker ({exc})") from None
        if applies:
            pins.append(Pin(canonicalize_name(name), version))
    return pins


def parse_torch_pin(text: str, source: str = TORCH_PIN) -> Pin:
    for line in text.splitlines():
        match = _ENTRY.match(line.strip())
        if match and canonicalize_name(match.group(1)) == "torch":
            return Pin("torch", match.group(2))
    raise ToolchainError(f"{source}: no `torch==VERSION` line")


def installed() -> dict[str, str]:
    """Every distribution this interpreter can import, by canonical name."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonicalize_name(name), dist.version)
    return found


def _same(locked: str, present: str, *, ignore_local: bool) -> bool:
    try:
        want, have = Version(locked), Version(present)
    except InvalidVersion:
        return locked == present
    if ignore_local:
        # torch 2.13.0+cpu and 2.13.0+cu128 are the same release built for other devices.
        return want.public == have.public
    return want == have


def torch_requirements() -> frozenset[str]:
    """What the installed torch requires, transitively (a CUDA build's nvidia-* libraries)."""
    seen: set[str] = set()
    todo = ["torch"]
    while todo:
        name = todo.pop()
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            dep = canonicalize_name(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return frozenset(seen)


def compare(
    pins: Iterable[Pin],
    torch: Pin | None,
    present: Mapping[str, str],
    torch_deps: frozenset[str] = frozenset(),
) -> list[Difference]:
    """Every way ``present`` differs from the lock (and the torch pin), sorted by name.

    ``torch_deps``: packages the installed torch requires; a site that installs a CUDA torch
    gets its CUDA libraries with it, which the lock (resolved for the CPU build) cannot pin."""
    expected = {p.name: p.version for p in pins}
    out = []
    for name, version in expected.items():
        have = present.get(name)
        if have is None or not _same(version, have, ignore_local=False):
            out.append(Difference(name, version, have))
    if torch is not None:
        have = present.get("torch")
        if have is None or not _same(torch.version, have, ignore_local=True):
            out.append(Difference("torch", torch.version, have))
    allowed = set(expected) | UNPINNED | ({"torch"} | torch_deps if torch is not None else set())
    for name in sorted(set(present) - allowed):
        out.append(Difference(name, None, present[name]))
    return sorted(out, key=lambda d: d.name)


@dataclass(frozen=True)
class Lock:
    """A project's lock files, read once."""

    path: Path
    text: str
    torch_text: str | None

    @classmethod
    def find(cls, root: Path) -> Lock | None:
        path = root / LOCK
        if not path.is_file():
            return None
        torch_path = root / TORCH_PIN
        torch_text = torch_path.read_text(encoding="utf-8") if torch_path.is_file() else None
        return cls(path, path.read_text(encoding="utf-8"), torch_text)

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256(self.text.encode("utf-8"))
        if self.torch_text is not None:
            digest.update(b"\0" + self.torch_text.encode("utf-8"))
        return digest.hexdigest()

    def differences(self, present: Mapping[str, str] | None = None) -> list[Difference]:
        pins = parse_lock(self.text, str(self.path))
        torch = parse_torch_pin(self.torch_text, TORCH_PIN) if self.torch_text else None
        if present is None:
            return compare(pins, torch, installed(), torch_requirements())
        return compare(pins, torch, present)


def mismatch_message(differences: list[Difference], lock: str, limit: int = 25) -> str:
    lines = [d.describe() for d in differences[:limit]]
    if len(differences) > limit:
        lines.append(f"... and {len(differences) - limit} more")
    return (
        f"the installed packages differ from {lock}:\n  "
        + "\n  ".join(lines)
        + f"\ninstall exactly the lock with `{FIX}` (a fresh venv: `rm -rf .venv && {FIX}`)"
    )


def versions(present: Mapping[str, str] | None = None) -> dict[str, str]:
    """Python and the provenance packages' versions, keyed as provenance records them."""
    present = installed() if present is None else present
    out = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        out[name.replace("-", "_")] = present.get(name, "not installed")
    return out


def provenance(root: Path) -> dict[str, str]:
    """The ``labmake.toolchain.*`` keys: versions, llama.cpp's own build id, and the hash of the
    lock the build ran under ("none" outside a project with a lock)."""
    from labmake.core.llama import build_id

    lock = Lock.find(root)
    keys = {f"labmake.toolchain.{name}": value for name, value in versions().items()}
    keys["labmake.toolchain.llama_cpp_build"] = build_id()
    keys["labmake.toolchain.lock_sha256"] = lock.sha256 if lock else "none"
    return dict(sorted(keys.items()))
