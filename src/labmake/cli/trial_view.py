"""What a try shows at the end, per leaf: the answers of the model it started from and of the
tried model to the leaf's held-out seed questions, beside the reference answer; the
reference-NLL difference with its interval; and the leaf's funnel.

Everything is read from the try's files: the evaluation stage's scores of the two models
(``build/eval/base.json`` and ``build/eval/phase-<last>.json``) summarised by the report's
own code (:func:`labmake.evaluation.summary.summarize`), and the generate and filter stages'
records. A try that had nothing to do prints the same, from the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from labmake.cli.samples import artifact, funnel
from labmake.cli.trial_project import TryProject
from labmake.core import artifacts, paths
from labmake.evaluation.models import BASE

CELL = 300  # characters of an answer shown
LINES = 6  # and lines


@dataclass
class LeafOutcome:
    leaf: str
    rows: list[dict[str, str]]  # question, context, reference, before, after
    nll: dict[str, Any] | None  # before, after, delta, ci, n
    choice: dict[str, Any] | None  # multiple-choice accuracy, knowledge leaves
    funnel: dict[str, int]


def _answers(result: dict[str, Any]) -> list[str] | None:
    return result.get("hf_answers") or result.get("answers")


def _compare(block: dict[str, Any] | None, tried: str) -> dict[str, Any] | None:
    if not block or tried not in block.get("delta", {}):
        return None
    delta = block["delta"][tried]
    return {
        "before": block["models"][BASE]["mean"],
        "after": block["models"][tried]["mean"],
        "delta": delta["mean"],
        "ci": delta["ci"],
        "n": delta["n"],
    }


def outcome(project: TryProject) -> list[LeafOutcome]:
    """Each tried leaf's result, from the try's evaluation and data files."""
    from labmake.evaluation.results import load_results, read_items
    from labmake.evaluation.summary import summarize

    eval_path = project.path(paths.dataset("eval"))
    mc = project.path(paths.MULTIPLE_CHOICE)
    items = read_items(eval_path)
    scored = [project.path(paths.eval_model(m)) for m in (BASE, project.tried)]
    results = load_results(scored, eval_path, mc if mc.is_file() else None)
    cfg = project.cfg
    summary = summarize(items, results, cfg.evaluate, cfg.seed)
    before, after = _answers(results[BASE]), _answers(results[project.tried])
    out = []
    for leaf in project.leaves:
        rows = [
            {
                "question": item["question"],
                "context": item.get("context") or "",
                "reference": item["answer"],
                "before": before[i] if before else "",
                "after": after[i] if after else "",
            }
            for i, item in enumerate(items)
            if item["leaf"] == leaf and item.get("source") == "seed"
        ]
        scores = summary["leaves"].get(leaf, {})
        out.append(
            LeafOutcome(
                leaf,
                rows,
                _compare(scores.get("reference_nll"), project.tried),
                _compare(scores.get("multiple_choice"), project.tried),
                _funnel(project, leaf),
            )
        )
    return out


def _funnel(project: TryProject, leaf: str) -> dict[str, int]:
    """The leaf's funnel, and what the mix trained on of it: accepted samples asking a held-out
    question are left out (they would leak its answer), and the leaf's other seeds go in."""
    build = project.path(paths.BUILD)
    stats_path = artifact(build, paths.filter_stats(leaf))
    stats = artifacts.read_json(stats_path) if stats_path.is_file() else {}
    out = funnel(artifacts.read_jsonl(artifact(build, paths.generated(leaf))), stats)
    mixed = project.path(paths.MIX_STATS)
    mix = artifacts.read_json(mixed).get("leaves", {}).get(leaf, {}) if mixed.is_file() else {}
    if "generated_records" in mix and "seed_train" in mix:
        out |= {"trained": mix["generated_records"], "seeds_trained": mix["seed_train"]}
    return out


def _short(text: str) -> str:
    """At most CELL characters and LINES lines: a model that does not stop repeats itself."""
    lines = text.strip().splitlines()
    text = "\n".join(lines[:LINES]) + ("\n…" if len(lines) > LINES else "")
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def verdict(nll: dict[str, Any]) -> str:
    low, high = nll["ci"] or (None, None)
    if high is not None and high < 0:
        return "the tried model gives the reference answers a higher likelihood: it learnt"
    if low is not None and low > 0:
        return "the tried model gives the reference answers a LOWER likelihood: it got worse"
    return "no clear difference on these few items (the interval spans 0)"


def print_outcome(
    outcomes: list[LeafOutcome], project: TryProject, out: TextIO, width: int | None = None
) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.rule import Rule
    from rich.table import Table

    console = Console(file=out, width=width)
    confidence = round(100 * project.cfg.evaluate.confidence)
    for result in outcomes:
        console.print(Rule(escape(result.leaf)))
        table = Table(show_lines=True, expand=True)
        for title in ("question", "reference", f"before: {project.start_short}", "after: tried"):
            table.add_column(escape(title), ratio=1)
        for row in result.rows:
            question = (f"{_short(row['context'])}\n\n" if row["context"] else "") + row["question"]
            cells = (question, row["reference"], row["before"], row["after"])
            table.add_row(*(escape(_short(c)) or "[dim](empty)[/]" for c in cells))
        if result.rows:
            console.print(table)
        nll = result.nll
        if nll is not None:
            ci = nll["ci"] or [float("nan")] * 2
            console.print(
                f"reference NLL on {nll['n']} held-out item(s), nats/token, lower is better: "
                f"before {nll['before']:.3f} -> after {nll['after']:.3f}, difference "
                f"{nll['delta']:+.3f} [{confidence}% interval {ci[0]:+.3f}, {ci[1]:+.3f}]: "
                f"{verdict(nll)}"
            )
        if result.choice is not None:
            c = result.choice
            console.print(
                f"multiple choice on {c['n']} question(s): before {c['before']:.2f} -> after "
                f"{c['after']:.2f} (accuracy)"
            )
        f = result.funnel
        trained = (
            f" -> {f['trained']} trained on, with {f['seeds_trained']} seed examples"
            if "trained" in f
            else ""
        )
        console.print(
            f"funnel: {f['requests']} requests -> {f['parsed']} parsed -> {f['judged']} judged "
            f"-> {f['kept']} kept{trained}  (labmake data show {result.leaf} --try)"
        )
