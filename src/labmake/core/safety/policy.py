"""A safety policy as data: named categories, what each covers, the detectors and lexicon that
find it, and worked verdicts for a few-shot judge.

The shipped policy is ``policy.yaml`` beside this module. ``generate.safety.policy`` in
params.yaml names a file that replaces it, or (``extends: labmake``) changes it: categories
given by id replace the shipped ones key by key, new ids are added, ``disable`` drops ids.
Every sample records the policy's name, version and the sha256 of what was loaded, so a
changed policy is visible in the data it filtered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from labmake.core.safety.personal import DETECTORS

SHIPPED_NAME = "labmake"
SAFE = "safe"  # the judge's verdict for a text that breaks no category
_ID = re.compile(r"^[a-z][a-z_]{1,30}\Z")
_TOP = {"name", "version", "description", "extends", "disable", "categories", "judge_examples"}
_CATEGORY = {"id", "title", "covers", "terms", "allow", "detectors", "public_mailboxes"}


class PolicyError(ValueError):
    """A policy file is wrong; the message names the file, the entry and the fix."""


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    covers: str  # what the category covers: the judge's rubric line
    terms: tuple[str, ...] = ()  # regular expressions, matched as whole words, any case
    allow: tuple[str, ...] = ()  # look-alikes: text they match is never read as a term
    detectors: tuple[str, ...] = ()  # names from labmake.core.safety.personal.DETECTORS
    public_mailboxes: tuple[str, ...] = ()  # role addresses (support@...) that are not personal


@dataclass(frozen=True)
class Example:
    text: str
    verdict: str


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    categories: tuple[Category, ...]
    judge_examples: tuple[Example, ...]
    source: str
    sha256: str  # of the policy as loaded (after extends): what the data was filtered by

    def identity(self) -> dict[str, Any]:
        """What a sample's provenance records."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.categories)

    def rubric(self) -> dict[str, Any]:
        """What the judge's prompt template reads: the categories and the worked verdicts."""
        return {
            "name": self.name,
            "categories": [
                {"id": c.id, "title": c.title, "covers": c.covers} for c in self.categories
            ],
            "examples": [{"text": e.text, "verdict": e.verdict} for e in self.judge_examples],
            "verdicts": [SAFE, *self.ids()],
        }


def _shipped_text() -> str:
    return resources.files("labmake.core.safety").joinpath("policy.yaml").read_text("utf-8")


def load(path: str | Path | None = None) -> Policy:
    """The shipped policy (``path`` None), or the one in ``path`` (replacing or extending it)."""
    if path is None:
        return _parse(_shipped_text(), "labmake/core/safety/policy.yaml")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            f"params.yaml: generate.safety.policy {str(path)!r} cannot be read ({exc.strerror}); "
            "give the path of a policy YAML file, or null for the shipped policy"
        ) from None
    return _parse(text, str(path))


@functools.cache
def _parse(text: str, source: str) -> Policy:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: a policy is a mapping with name, version, categories")
    unknown = set(doc) - _TOP
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_TOP)}")
    if "extends" in doc:
        if doc["extends"] != SHIPPED_NAME:
            raise PolicyError(f"{source}: extends must be {SHIPPED_NAME!r} (the shipped policy)")
        doc = _merge(yaml.safe_load(_shipped_text()), doc, source)
    elif "disable" in doc:
        raise PolicyError(f"{source}: disable needs extends: {SHIPPED_NAME}")
    return _build(doc, source)


def _merge(base: dict[str, Any], over: dict[str, Any], source: str) -> dict[str, Any]:
    """The shipped policy changed by ``over``: categories by id, key by key; ``disable`` drops."""
    categories = {c["id"]: dict(c) for c in base["categories"]}
    for i, cat in enumerate(over.get("categories") or []):
        if not isinstance(cat, dict) or "id" not in cat:
            raise PolicyError(f"{source}: categories[{i}] is a mapping with an id")
        categories[cat["id"]] = {**categories.get(cat["id"], {}), **cat}
    disable = over.get("disable") or []
    for name in disable:
        if name not in categories:
            raise PolicyError(f"{source}: disable names {name!r}, not a category id")
    merged = {**base, **{k: v for k, v in over.items() if k not in ("extends", "disable")}}
    merged["categories"] = [c for k, c in categories.items() if k not in disable]
    examples = merged.get("judge_examples") or []
    merged["judge_examples"] = [e for e in examples if e.get("verdict") not in disable]
    return merged


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _category(raw: Any, where: str) -> Category:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where} must be a mapping (id, title, covers, ...)")
    unknown = set(raw) - _CATEGORY
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_CATEGORY)}"
        )
    for key in ("id", "title", "covers"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise PolicyError(f"{where}: {key} is required (a non-empty string)")
    if not _ID.match(raw["id"]) or raw["id"] == SAFE:
        raise PolicyError(
            f"{where}: id {raw['id']!r} must be lower-case letters and _ (and not {SAFE!r})"
        )
    cat = Category(
        raw["id"],
        raw["title"].strip(),
        " ".join(raw["covers"].split()),
        _strings(raw.get("terms"), f"{where}.terms"),
        _strings(raw.get("allow"), f"{where}.allow"),
        _strings(raw.get("detectors"), f"{where}.detectors"),
        tuple(
            m.lower() for m in _strings(raw.get("public_mailboxes"), f"{where}.public_mailboxes")
        ),
    )
    for name in cat.detectors:
        if name not in DETECTORS:
            raise PolicyError(f"{where}: unknown detector {name!r}; known: {sorted(DETECTORS)}")
    for key in ("terms", "allow"):
        for k, pattern in enumerate(getattr(cat, key)):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PolicyError(
                    f"{where}.{key}[{k}] {pattern!r} is not a valid regular expression ({exc})"
                ) from None
    return cat


def _build(doc: dict[str, Any], source: str) -> Policy:
    if not isinstance(doc.get("name"), str) or not doc["name"]:
        raise PolicyError(f"{source}: name is required")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PolicyError(f"{source}: version must be a positive integer (bump it on a change)")
    raw = doc.get("categories")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{source}: categories must be a non-empty list")
    categories = tuple(_category(c, f"{source}: categories[{i}]") for i, c in enumerate(raw))
    ids = [c.id for c in categories]
    if len(set(ids)) != len(ids):
        raise PolicyError(f"{source}: category ids must be unique ({ids})")
    examples = []
    for i, ex in enumerate(doc.get("judge_examples") or []):
        if not isinstance(ex, dict) or set(ex) != {"text", "verdict"}:
            raise PolicyError(f"{source}: judge_examples[{i}] is a mapping of text and verdict")
        if ex["verdict"] not in (SAFE, *ids):
            raise PolicyError(
                f"{source}: judge_examples[{i}].verdict {ex['verdict']!r} is neither {SAFE!r} "
                f"nor a category id {ids}"
            )
        examples.append(Example(" ".join(str(ex["text"]).split()), ex["verdict"]))
    body = {
        "name": doc["name"],
        "version": version,
        "categories": [asdict(c) for c in categories],
        "judge_examples": [asdict(e) for e in examples],
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()
    return Policy(doc["name"], version, categories, tuple(examples), source, digest)
