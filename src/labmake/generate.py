"""Stage 2 (per leaf): seeds -> build/generated/{leaf}.jsonl, the teacher's raw outputs.

Each request is a few-shot, completion-style prompt rendered from a template file, drawing its
examples from this leaf only. A request's seed is derived from (global seed, leaf, index), so a
leaf's output depends on nothing outside the leaf. One record per request, with provenance;
parsing and judging happen in the filter stage, so a change of filter never re-asks the teacher.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from . import io
from .config import GenerateConfig, TeacherConfig
from .teacher import Request, Teacher, complete_all, derive_seed, open_teacher

log = logging.getLogger(__name__)

# Where each template leaves the teacher: the completion continues after this marker.
MARKERS = {"knowledge": "Q:", "skill_freeform": "Q:", "skill_grounded": "Context:"}
# Stop at the end of the first item: a small base teacher rambles on past the format, and an
# early stop is both faster and keeps the item whole (measured on Gemma 3 270M: without it every
# request ran to max_tokens and the last item was cut off).
STOPS = {
    "knowledge": ("\n---", "\nQ:", "\nDocument:"),
    "skill_freeform": ("\n---", "\nQ:"),
    "skill_grounded": ("\n---", "\nContext:"),
}


@dataclass(frozen=True)
class PlannedRequest:
    index: int
    template: str
    request: Request
    chunk: str | None


@cache
def _environment():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("labmake", "prompts"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


@cache
def template_sha256(name: str) -> str:
    source, _, _ = _environment().loader.get_source(_environment(), f"{name}.j2")
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def render(name: str, **values: Any) -> str:
    return _environment().get_template(f"{name}.j2").render(**values).rstrip()


def template_for(seeds: dict[str, Any]) -> str:
    if seeds["kind"] == "knowledge":
        return "knowledge"
    return "skill_grounded" if seeds["grounded"] else "skill_freeform"


def _context_groups(seeds: dict[str, Any]) -> list[dict[str, Any]]:
    """Knowledge seeds come flattened; regroup the Q&A pairs under their shared context."""
    groups: dict[str, list[dict[str, str]]] = {}
    for example in seeds["seed_examples"]:
        groups.setdefault(example["context"], []).append(example)
    return [{"context": ctx, "pairs": pairs} for ctx, pairs in groups.items()]


def _examples(seeds: dict[str, Any], template: str, count: int, rng: random.Random) -> list[Any]:
    if template == "knowledge":
        groups = _context_groups(seeds)
        rng.shuffle(groups)
        # examples_per_prompt counts Q&A pairs; knowledge shows whole contexts with their pairs.
        chosen, pairs = [], 0
        for group in groups:
            if pairs >= count:
                break
            chosen.append(group)
            pairs += len(group["pairs"])
        return chosen
    examples = list(seeds["seed_examples"])
    rng.shuffle(examples)
    return examples[:count]


def plan_requests(
    seeds: dict[str, Any], gen: GenerateConfig, teacher: TeacherConfig, seed: int, fits: Any
) -> tuple[list[PlannedRequest], int]:
    """The leaf's requests, and how many had to be skipped because no prompt fit the context.

    ``fits(prompt) -> bool`` tells whether a prompt leaves room for ``max_tokens`` of answer;
    examples are dropped one at a time until it does.
    """
    template = template_for(seeds)
    chunks = seeds["chunks"]
    if template == "knowledge" and not chunks:
        raise ValueError(f"{seeds['leaf']}: knowledge leaf has no document text to ground on")
    planned, skipped = [], 0
    for index in range(gen.requests_per_leaf):
        request_seed = derive_seed(seed, seeds["leaf"], index)
        rng = random.Random(request_seed)
        examples = _examples(seeds, template, gen.examples_per_prompt, rng)
        chunk = chunks[index % len(chunks)] if template == "knowledge" else None
        values = {"task_description": seeds["task_description"], "chunk": chunk}
        while True:
            prompt = render(template, examples=examples, **values)
            if fits(prompt) or len(examples) <= 1:
                break
            examples = examples[:-1]
        if not fits(prompt):
            log.warning(
                "%s: request %d skipped: its prompt does not fit the teacher's context",
                seeds["leaf"],
                index,
            )
            skipped += 1
            continue
        request = Request(prompt, request_seed, teacher.max_tokens, STOPS[template])
        planned.append(PlannedRequest(index, template, request, chunk))
    return planned, skipped


def records(
    seeds: dict[str, Any], planned: list[PlannedRequest], teacher: Teacher
) -> list[dict[str, Any]]:
    completions = complete_all(teacher, [p.request for p in planned], f"generate {seeds['leaf']}")
    out = []
    for item, completion in zip(planned, completions, strict=True):
        out.append(
            {
                "leaf": seeds["leaf"],
                "kind": seeds["kind"],
                "index": item.index,
                "seed": item.request.seed,
                "teacher": teacher.identity,
                "template": item.template,
                "template_sha256": template_sha256(item.template),
                "prompt_sha256": hashlib.sha256(item.request.prompt.encode("utf-8")).hexdigest(),
                "marker": MARKERS[item.template],
                "chunk": item.chunk,
                "completion": completion.text,
                "finished": completion.finished,
            }
        )
    return out


def run(
    seeds_path: Path, out: Path, teacher_cfg: TeacherConfig, gen: GenerateConfig, seed: int
) -> None:
    seeds = io.read_json(seeds_path)
    teacher = open_teacher(teacher_cfg)
    try:

        def fits(prompt: str) -> bool:
            return teacher.count_tokens(prompt) + teacher_cfg.max_tokens <= teacher.n_ctx

        planned, skipped = plan_requests(seeds, gen, teacher_cfg, seed, fits)
        log.info(
            "%s: %d teacher requests (%d skipped: prompt too long)",
            seeds["leaf"],
            len(planned),
            skipped,
        )
        io.write_jsonl(out, records(seeds, planned, teacher))
    finally:
        teacher.close()
