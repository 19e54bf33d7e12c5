"""The files between one model's job and the report: the held-out items (build/data/eval.jsonl)
and each model's scores (build/eval/{model}.json), which record the hashes of the items and
questions they scored so the report never mixes scores of two versions of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts


def read_items(eval_path: Path) -> list[dict[str, Any]]:
    items = artifacts.read_jsonl(eval_path)
    if not items:
        raise ValueError(
            f"{eval_path}: no held-out items; set mix.eval_seeds_per_leaf or "
            "mix.eval_generated_per_leaf >= 1 in params.yaml"
        )
    return items


def items_sha256(eval_path: Path) -> str:
    return artifacts.sha256_file(eval_path)


def load_results(
    paths_: Sequence[Path], eval_path: Path, mc_path: Path | None = None
) -> dict[str, dict[str, Any]]:
    """Every build/eval/{model}.json, checked to be scores of the current eval.jsonl (and, for
    the models that answer multiple choice, of the current multiple_choice.jsonl)."""
    expected = items_sha256(eval_path)
    expected_mc = artifacts.sha256_file(mc_path) if mc_path is not None else None
    results = {}
    for path in paths_:
        result = artifacts.read_json(path)
        stale = result.get("items_sha256") != expected
        if expected_mc is not None and "multiple_choice" in result:
            stale = stale or result.get("multiple_choice_sha256") != expected_mc
        if stale:
            raise ValueError(
                f"{path}: scores another version of {eval_path}"
                + (f" or {mc_path}" if mc_path is not None else "")
                + "; rebuild it (snakemake --forcerun evaluate)"
            )
        results[result["model"]] = result
    return results
