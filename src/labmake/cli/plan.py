"""``labmake plan``: what a build would redo per leaf, and the teacher work it would cost.

The leaves to redo are those new or changed since the last build (:mod:`labmake.cli.changes`);
each is priced in teacher requests and tokens by a dry run of its pipeline, without loading
any model. A leaf that cannot be priced (a broken file, a refused document source, a pipeline
that does not check) is shown with the reason, and the command exits 1: a plan with a hole in
it is not a plan.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from labmake.cli.changes import (
    ADDED,
    CHANGED,
    REMOVED,
    UNCHANGED,
    LeafChange,
    change_line,
    diff_against_build,
    load_project,
)
from labmake.cli.exit_codes import EXIT_USAGE
from labmake.core import paths
from labmake.taxonomy.findings import TaxonomyError, printable
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.limits import estimate_tokens

# plan speaks of what a build does with a leaf, so a leaf it never built is "new".
PLAN_WORDS = {ADDED: "new", CHANGED: "changed", REMOVED: "removed", UNCHANGED: "unchanged"}
COST_KEYS = ("requests", "prompt_tokens", "completion_tokens", "tokens")

if TYPE_CHECKING:  # the config module is imported when a command runs, not when it is listed
    from labmake.core.config import BuildConfig


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan", help="what a build would redo per leaf, with teacher requests and tokens"
    )
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--taxonomy", default=None, help="taxonomy root (default: params.yaml's)")
    p.add_argument("--build-dir", default=paths.BUILD, help="the last build's folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return run_plan(
        Path(args.params),
        taxonomy=Path(args.taxonomy) if args.taxonomy else None,
        build_dir=Path(args.build_dir),
        fmt=args.format,
    )


def estimate_leaf(
    root: Path, leaf: str, cfg: BuildConfig, base: Path = Path(".")
) -> dict[str, int]:
    """Teacher requests and estimated tokens to generate this leaf's data from scratch.

    A dry run of the leaf's pipeline (labmake.sdg) in which every sample passes every judge:
    an upper bound, since judges only ever remove samples before the next teacher call. A
    knowledge leaf's evaluation multiple choice (labmake.sdg.multiple_choice) is counted in, and
    with generate.knowledge.augment its chunk rewrites (``augment_requests``) and the first
    round's Q/A requests on them, every rewrite kept (``augmented_qa_requests``).
    Git documents are read only from taxonomy.document_sources (relative folders from ``base``,
    the folder of params.yaml, where the build runs).
    """
    from labmake.sdg.generation import request_bound
    from labmake.sdg.multiple_choice import estimate_requests
    from labmake.taxonomy.document_sources import DocumentSources
    from labmake.taxonomy.formats import ConverterChoice
    from labmake.taxonomy.seeds import leaf_record

    # Chunk counts from the quick token estimate: planning must not load a tokenizer.
    sources = DocumentSources(cfg.taxonomy.document_sources, base)
    loaded = load_leaf(root, leaf, ConverterChoice.of(cfg.seeds))
    record = leaf_record(loaded, cfg.seeds, estimate_tokens, sources)
    # A pipeline with a yield floor may run more rounds: up to `most` requests, priced at its
    # first round's tokens per request.
    bound = request_bound(record, cfg.generate, cfg.teacher, cfg.seed)
    first, most = bound.first, bound.most
    scale = most / len(first) if first else 1.0
    mc = estimate_requests(record, cfg.evaluate.multiple_choice, cfg.teacher, cfg.seed)
    prompt = round(scale * sum(estimate_tokens(r.prompt) for r in first))
    prompt += sum(estimate_tokens(r.prompt) for r in mc)
    completion = round(scale * sum(r.max_tokens for r in first)) + sum(r.max_tokens for r in mc)
    out = {
        "requests": most + len(mc),
        "first_round_requests": len(first) + len(mc),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
    }
    if bound.rewrites:
        out |= {"augment_requests": bound.rewrites, "augmented_qa_requests": bound.on_rewrites}
    return out


def run_plan(
    params_path: Path,
    *,
    taxonomy: Path | None = None,
    build_dir: Path = Path(paths.BUILD),
    fmt: str = "text",
    out: TextIO | None = None,
) -> int:
    """Print what a build would redo per leaf, with the teacher work it costs; 0, 1 when a
    leaf could not be priced, 2 for a usage error."""
    out = out or sys.stdout
    project = load_project(params_path, taxonomy, "plan")
    if project is None:
        return EXIT_USAGE
    cfg, root = project
    try:
        changes = diff_against_build(root, build_dir)
    except TaxonomyError as exc:
        print(f"labmake plan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rows = [(change, _row(root, change, cfg, params_path.parent)) for change in changes]
    totals = _totals(rows)
    unpriced = [row["leaf"] for _, row in rows if "error" in row]
    if fmt == "json":
        doc = {"base": f"last build ({build_dir})", "leaves": [r for _, r in rows]}
        doc["totals"] = totals
        out.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    else:
        _print_text(rows, totals, build_dir, out)
    if unpriced:
        print(
            f"labmake plan: error: {len(unpriced)} leaf/leaves could not be priced "
            f"({', '.join(printable(u) for u in unpriced[:5])}); the totals leave them out. "
            "Fix what each line says (labmake validate shows the file's problems).",
            file=sys.stderr,
        )
        return 1
    return 0


def _row(root: Path, change: LeafChange, cfg: BuildConfig, base: Path) -> dict[str, Any]:
    """One leaf's entry: its status and, for a leaf to generate, its cost (or why none)."""
    row: dict[str, Any] = {"leaf": change.leaf, "status": PLAN_WORDS[change.status]}
    row["reasons"] = list(change.reasons)
    if change.status in (ADDED, CHANGED):
        try:
            estimate = estimate_leaf(root, change.leaf, cfg, base)
        except (TaxonomyError, ValueError, OSError, RuntimeError) as exc:
            row["error"] = printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            estimate = dict.fromkeys(COST_KEYS, 0)
        row.update(estimate)
    return row


def _totals(rows: list[tuple[LeafChange, dict[str, Any]]]) -> dict[str, int]:
    totals = {key: sum(row.get(key, 0) for _, row in rows) for key in COST_KEYS}
    totals["leaves_to_generate"] = sum(c.status in (ADDED, CHANGED) for c, _ in rows)
    for status in (ADDED, CHANGED, UNCHANGED, REMOVED):
        totals[PLAN_WORDS[status]] = sum(c.status == status for c, _ in rows)
    return totals


def _print_text(
    rows: list[tuple[LeafChange, dict[str, Any]]],
    totals: dict[str, int],
    build_dir: Path,
    out: TextIO,
) -> None:
    print(f"base: last build ({build_dir})", file=out)
    for change, row in rows:
        extra = ""
        if "requests" in row:
            first = row.get("first_round_requests", row["requests"])
            rounds = f" (first round {first})" if first != row["requests"] else ""
            if row.get("augment_requests"):
                rounds += (
                    f" [{row['augment_requests']} chunk rewrites, then up to "
                    f"{row['augmented_qa_requests']} requests on the rewritten chunks]"
                )
            extra = f": at most {row['requests']} requests{rounds}, ~{row['tokens']} tokens"
        if "error" in row:
            extra += f" [cannot estimate: {row['error']}]"
        print(change_line(change, row["status"], extra), file=out)
    print(
        f"total: {totals['leaves_to_generate']} leaves to generate, {totals['requests']} teacher "
        f"requests, ~{totals['tokens']} tokens (~{totals['prompt_tokens']} prompt + "
        f"{totals['completion_tokens']} completion)",
        file=out,
    )
