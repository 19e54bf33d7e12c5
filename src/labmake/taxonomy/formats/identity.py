"""Which library converts each document format, and its version: part of every cache key and
of the seeds file, so a new version of a converter converts documents again."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version


@dataclass(frozen=True)
class ConverterChoice:
    """params.yaml's seeds.converter and seeds.docling_models."""

    name: str = "builtin"  # builtin | docling
    docling_models: str | None = None

    @classmethod
    def of(cls, seeds: object) -> ConverterChoice:
        """From a SeedsConfig (or anything with its two fields)."""
        return cls(getattr(seeds, "converter", "builtin"), getattr(seeds, "docling_models", None))


BUILTIN = ConverterChoice()

# The distributions each format's converter runs, in the order they are named.
CONVERTER_PACKAGES = {
    "pdf": ("pypdfium2",),
    "docx": ("mammoth", "markdownify", "beautifulsoup4"),
    "html": ("markdownify", "beautifulsoup4"),
}
# Bumped when labmake's own handling of a converter's output changes.
REVISION = 1


@cache
def converter_identity(fmt: str, choice: ConverterChoice = BUILTIN) -> str:
    """e.g. ``"pypdfium2 5.15.2 (labmake r1)"``; docling's names its models' folder (PDF)."""
    if choice.name == "docling":
        models = f", models {choice.docling_models}" if fmt == "pdf" else ""
        return f"{_version_of('docling')}{models} (labmake r{REVISION})"
    return ", ".join(_version_of(p) for p in CONVERTER_PACKAGES[fmt]) + f" (labmake r{REVISION})"


def _version_of(package: str) -> str:
    try:
        return f"{package} {version(package)}"
    except PackageNotFoundError:
        return f"{package} (missing)"
