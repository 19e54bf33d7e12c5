"""Pipelines as data: YAML files listing blocks, checked before any teacher call.

A pipeline file has ``name``, ``version`` (bump it when the pipeline's meaning changes: it is
recorded with every sample), ``outputs`` (the columns a sample record keeps) and ``blocks``;
``rounds: {min_kept: NAME, max_requests: NAME}`` (params.yaml keys, like counts) gives it a
yield floor (:mod:`labmake.sdg.rounds`).
The shipped pipelines live in ``labmake/sdg/pipelines/``; ``generate.pipelines_dir`` in
params.yaml names a folder whose ``<name>.yaml`` files shadow them by name (and whose
``prompts/`` folder shadows the shipped templates by file name).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import TemplateError

from labmake.core.config import GenerateConfig
from labmake.sdg import templates
from labmake.sdg.blocks import make, placeholder_row
from labmake.sdg.blocks.base import Block, Context, Counts, PipelineError, Row, resolve_count

SHIPPED = ("knowledge", "freeform", "grounded", "simple")
BY_KIND = {"knowledge": "knowledge", "freeform": "freeform", "grounded": "grounded"}


@dataclass(frozen=True)
class Pipeline:
    name: str
    version: int
    outputs: tuple[str, ...]
    blocks: tuple[Block, ...]
    source: str  # where it was read from, for messages
    override_dir: str | None = None
    rounds: dict[str, Any] | None = None  # {min_kept, max_requests}: count names or numbers


def pipeline_for(seeds: dict[str, Any], gen: GenerateConfig) -> str:
    """The pipeline a leaf uses: generate.pipeline, or by the leaf's kind when that is auto."""
    if gen.pipeline != "auto":
        return gen.pipeline
    if seeds["kind"] == "knowledge":
        return BY_KIND["knowledge"]
    return BY_KIND["grounded"] if seeds.get("grounded") else BY_KIND["freeform"]


def _read(name: str, override_dir: str | None) -> tuple[str, str]:
    if override_dir is not None:
        path = Path(override_dir) / f"{name}.yaml"
        if path.is_file():
            return path.read_text(encoding="utf-8"), str(path)
    shipped = resources.files("labmake.sdg").joinpath("pipelines", f"{name}.yaml")
    if not shipped.is_file():
        where = f" or {override_dir}/" if override_dir else ""
        raise PipelineError(
            f"params.yaml: generate.pipeline {name!r} is not a pipeline: no {name}.yaml in the "
            f"shipped pipelines ({', '.join(SHIPPED)}){where}"
        )
    return shipped.read_text(encoding="utf-8"), f"labmake/sdg/pipelines/{name}.yaml"


def load(name: str, override_dir: str | None = None) -> Pipeline:
    text, source = _read(name, override_dir)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not {"name", "version", "outputs", "blocks"} <= set(doc):
        raise PipelineError(
            f"{source}: a pipeline is a mapping with name, version, outputs, blocks"
        )
    unknown = set(doc) - {"name", "version", "description", "outputs", "blocks", "rounds"}
    if unknown:
        raise PipelineError(f"{source}: unknown key(s) {sorted(unknown)}")
    if doc["name"] != name:
        raise PipelineError(f"{source}: its name is {doc['name']!r}; it must be {name!r}")
    if not isinstance(doc["version"], int) or isinstance(doc["version"], bool):
        raise PipelineError(f"{source}: version must be an integer")
    if not isinstance(doc["blocks"], list) or not doc["blocks"]:
        raise PipelineError(f"{source}: blocks must be a non-empty list")
    blocks = tuple(make(spec, f"{source}: block {i}") for i, spec in enumerate(doc["blocks"]))
    names = Counter(b.name for b in blocks)
    repeated = sorted(n for n, c in names.items() if c > 1)
    if repeated:
        raise PipelineError(f"{source}: block names must be unique (repeated: {repeated})")
    rounds = doc.get("rounds")
    if rounds is not None and (not isinstance(rounds, dict) or set(rounds) != _ROUND_KEYS):
        raise PipelineError(f"{source}: rounds is a mapping of {sorted(_ROUND_KEYS)}")
    outputs = tuple(doc["outputs"])
    return Pipeline(name, doc["version"], outputs, blocks, source, override_dir, rounds)


_ROUND_KEYS = {"min_kept", "max_requests"}


def floor(pipeline: Pipeline, counts: Counts | None) -> tuple[int, int] | None:
    """(min_kept, max_requests) of a pipeline with rounds, resolved in params; else None."""
    if pipeline.rounds is None:
        return None
    where = f"{pipeline.source}: rounds"
    return (
        resolve_count(pipeline.rounds["min_kept"], counts, where),
        resolve_count(pipeline.rounds["max_requests"], counts, where),
    )


def check(
    pipeline: Pipeline, gen: GenerateConfig | None = None, counts: Counts | None = None
) -> None:
    """Everything that can be known before a teacher call: block order, columns, templates.

    Count names resolve against ``counts`` (section name, typed config) when given, else
    against the generate section ``gen``.
    """
    root = counts if counts is not None else ("generate", gen or GenerateConfig())
    src = pipeline.source
    floor(pipeline, root)
    if pipeline.blocks[0].type != "rows" or any(b.type == "rows" for b in pipeline.blocks[1:]):
        raise PipelineError(f"{src}: the first block, and only it, must be of type rows")
    available: set[str] = set()
    for i, block in enumerate(pipeline.blocks):
        block.counts(root)
        for name in block.template_names():
            try:
                templates.source(name, pipeline.override_dir)
            except templates.TemplateNotFound:
                raise PipelineError(
                    f"{block.where}: template {name!r} not found in labmake/sdg/prompts"
                    + (f" or {pipeline.override_dir}/prompts" if pipeline.override_dir else "")
                ) from None
        missing = block.needs(pipeline.override_dir) - available
        if missing:
            raise PipelineError(
                f"{block.where}: needs column(s) {sorted(missing)} that no earlier block "
                f"produces (available: {sorted(available)})"
            )
        for name in block.template_names():
            row = placeholder_row(pipeline.blocks[:i])
            values = {k: "<" + k + ">" for k in templates.LEAF_GLOBALS} | row
            values |= block.template_values()
            try:
                templates.render(name, values, pipeline.override_dir)
            except TemplateError as exc:
                raise PipelineError(
                    f"{block.where}: template {name} does not render: {exc}"
                ) from None
        available |= block.produces()
    missing = set(pipeline.outputs) - available
    if missing:
        raise PipelineError(f"{src}: outputs {sorted(missing)} are produced by no block")


@dataclass
class Result:
    kept: list[Row]
    rejected: list[Row]
    flow: list[dict[str, Any]]  # per block: rows in, kept, rejected


def run(pipeline: Pipeline, ctx: Context) -> Result:
    check(pipeline, ctx.gen, ctx.counts)
    rows: list[Row] = []
    rejected: list[Row] = []
    flow = []
    for block in pipeline.blocks:
        before = len(rows)
        rows, dropped = block.run(rows, ctx)
        rejected.extend(dropped)
        flow.append(
            {"block": block.name, "in": before, "kept": len(rows), "rejected": len(dropped)}
        )
    return Result(rows, rejected, flow)
