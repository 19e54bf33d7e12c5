"""Shared pieces of the hostile-input tests (tests/unit/test_hostile_*.py): small leaves, and a
throw-away project (taxonomy + params.yaml) that `labmake validate`/`plan`/`build` can run on.

Each test in those files is one hostile or careless input found in an audit, with the message a
user must see; none of them needs a model or the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SKILL_LEAF = "compositional_skills/writing/poems"
KNOWLEDGE_LEAF = "knowledge/astronomy/planets"

SKILL = (
    "version: 3\ncreated_by: tester\ntask_description: Write a short poem about a place.\n"
    "seed_examples:\n"
    + "".join(
        f"  - question: Write a poem about harbour number {i}.\n"
        f"    answer: Boats rock in harbour {i}, gulls call over the quay.\n"
        for i in range(5)
    )
)


def knowledge(document: str) -> str:
    """A valid knowledge leaf with ``document`` (a YAML block: ``document:\\n  ...``)."""
    return (
        "version: 3\ncreated_by: tester\ndomain: astronomy\n"
        "document_outline: Facts about the planets.\nseed_examples:\n"
        + "".join(
            f"  - context: Planet {i} circles the sun every {i + 2} years.\n"
            "    questions_and_answers:\n"
            + "".join(
                f"      - question: How long is year {j} on planet {i}?\n"
                f"        answer: It lasts {i + j + 2} earth years.\n"
                for j in range(3)
            )
            for i in range(5)
        )
        + document
    )


def git_document(repo: str, patterns: tuple[str, ...] = ("docs/*.md",)) -> str:
    return f"document:\n  repo: '{repo}'\n  commit: {'a' * 40}\n  patterns:\n" + "".join(
        f"    - '{p}'\n" for p in patterns
    )


def put(root: Path, leaf: str, text: str) -> Path:
    folder = root / leaf
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "qna.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` laid over it, section by section."""
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def repo_params(**patch: Any) -> dict[str, Any]:
    """The project's params.yaml with ``patch`` laid over it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    return merge(params, patch)


def project(tmp_path: Path, leaves: dict[str, str] | None = None, **patch: Any) -> Path:
    """A folder with taxonomy/ (``leaves``: name -> qna.yaml text; default one skill leaf) and a
    params.yaml pointing at it; returns the params.yaml path."""
    root = tmp_path / "taxonomy"
    root.mkdir(parents=True, exist_ok=True)
    for leaf, text in (leaves if leaves is not None else {SKILL_LEAF: SKILL}).items():
        put(root, leaf, text)
    params = repo_params(**merge({"taxonomy": {"root": str(root)}}, patch))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return path
