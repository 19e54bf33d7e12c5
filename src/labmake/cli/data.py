"""``labmake data show LEAF``: a leaf's generated samples, kept and rejected, and why
(``--documents``: its documents as the teacher reads them, :mod:`labmake.cli.data_documents`).

Reads a build's files and changes nothing: ``build/generated/{leaf}.jsonl`` (every sample the
pipeline made, with the block that rejected it and the judges' scores), the filter stage's
accepted samples and counts. ``--build-dir`` is a build's artifact folder (``build``) or a
``labmake try`` folder (``build/try``); ``--html FILE`` writes the same as one page.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.leaves import LeafError, from_top_folder, leaf_name
from labmake.cli.samples import KEPT, REJECTED, LeafSamples, Sample, SamplesError, select
from labmake.core import paths

CELL = 240  # characters of a text shown in a terminal cell; --html shows everything


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="look at a leaf's generated data (labmake data show LEAF)")
    actions = p.add_subparsers(dest="data_command", required=True)
    show = actions.add_parser(
        "show", help="a leaf's generated samples, kept and rejected, with what rejected each"
    )
    show.add_argument("leaf", help="the leaf (as `labmake diff` names it) or its folder")
    show.add_argument(
        "--build-dir",
        default=paths.BUILD,
        help="a build's folder (build) or a labmake try folder (build/try)",
    )
    show.add_argument("--try", dest="trial", action="store_true", help="the last labmake try's")
    show.add_argument("--params", default="params.yaml")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--kept", action="store_true", help="only the samples accepted")
    which.add_argument("--rejected", action="store_true", help="only the samples rejected")
    show.add_argument("--block", help="only those rejected by this block or filter rule")
    show.add_argument("--limit", type=int, default=None, help="show at most this many")
    show.add_argument("--html", metavar="FILE", help="write the same as one self-contained page")
    show.add_argument(
        "--documents",
        action="store_true",
        help="the leaf's documents as the teacher reads them (converted from PDF, Word, HTML)",
    )
    show.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.documents:
        from labmake.cli.data_documents import show_documents

        return show_documents(args.leaf, Path(args.params))
    try:
        build_root, params_path = resolve_build(Path(args.build_dir), Path(args.params), args.trial)
        cfg = _config(params_path)
        root = Path(cfg.taxonomy.root) if cfg is not None else Path("taxonomy")
        leaf = _leaf(args.leaf, params_path.parent / root if params_path else root)
        from labmake.cli.samples import load_leaf_samples

        data = load_leaf_samples(build_root, leaf, cfg.filter if cfg is not None else None)
    except (LeafError, SamplesError) as exc:
        print(f"labmake data show: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.limit is not None and args.limit < 0:
        print("labmake data show: error: --limit must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    status = KEPT if args.kept else REJECTED if args.rejected else None
    shown = select(data.samples, status=status, block=args.block, limit=args.limit)
    if args.html:
        from labmake.cli.data_html import write_page

        write_page(Path(args.html), data, shown, build_root)
        print(f"labmake data show: wrote {args.html} ({len(shown)} samples)")
        return 0
    print_samples(data, shown, build_root)
    return 0


def resolve_build(build_dir: Path, params: Path, trial: bool) -> tuple[Path, Path | None]:
    """(the folder holding seeds/, generated/..., the params.yaml it was built with or None).

    A ``labmake try`` folder is a project: its own params.yaml beside its build/ folder."""
    if trial:
        cfg = _config(params if params.is_file() else None)
        folder = cfg.try_.folder if cfg is not None else f"{paths.BUILD}/try"
        build_dir = params.parent / folder
    if (build_dir / "params.yaml").is_file() and (build_dir / paths.BUILD).is_dir():
        return build_dir / paths.BUILD, build_dir / "params.yaml"
    if not build_dir.is_dir():
        raise SamplesError(f"{build_dir}: no such build folder (--build-dir)")
    return build_dir, params if params.is_file() else None


def _config(params_path: Path | None) -> Any:
    if params_path is None:
        return None
    from labmake.core.config import ConfigError, load

    try:
        return load(params_path)
    except ConfigError as exc:
        raise SamplesError(str(exc)) from None


def _leaf(arg: str, root: Path) -> str:
    """The leaf's name; a leaf no longer in the taxonomy may still be in the build."""
    try:
        return leaf_name(arg, root)
    except LeafError:
        return from_top_folder(arg) or arg.strip("/")


def _short(text: str, limit: int = CELL) -> str:
    text = " ".join(text.split()) if "\n" not in text else text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scores(sample: Sample) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in sorted(sample.scores.items()))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


def funnel_line(funnel: dict[str, int]) -> str:
    return " -> ".join(f"{n} {name}" for name, n in funnel.items())


def print_samples(data: LeafSamples, shown: list[Sample], build_root: Path) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{escape(data.leaf)}[/] ({escape(str(build_root))})")
    console.print(f"funnel: {funnel_line(data.funnel)}")
    for note in data.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    table = Table(show_lines=True, expand=True)
    for column, style in (("id", "dim"), ("fate", ""), ("scores", "dim")):
        table.add_column(column, style=style or None, no_wrap=column == "id")
    table.add_column("sample", ratio=3)
    for s in shown:
        fate = (
            "[green]kept[/]" if s.status == KEPT else f"[red]{escape(s.stage)}: {escape(s.by)}[/]"
        )
        if s.reason:
            fate += f"\n[dim]{escape(_short(s.reason, 80))}[/]"
        table.add_row(escape(s.id), fate, escape(_scores(s)), escape(_text(s)))
    console.print(table)
    summary = [f"{len(shown)} of {len(data.samples)} samples shown"]
    summary += [f"{n} {by}" for by, n in _tally(data.samples)]
    console.print("; ".join(summary))
    _print_stats_extras(console, data.stats)


def _text(s: Sample) -> str:
    parts = [f"context: {_short(s.context)}"] if s.context else []
    parts += [f"Q: {_short(s.question)}", f"A: {_short(s.answer)}"]
    raw = s.extras.get("raw")
    if raw and s.status != KEPT:
        shown = raw if isinstance(raw, str) else "\n".join(f"{k}: {v}" for k, v in raw.items())
        parts.append(f"teacher wrote: {_short(str(shown))}")
    return "\n".join(parts)


def _tally(samples: list[Sample]) -> list[tuple[str, int]]:
    from labmake.cli.samples import rejection_counts

    return [(f"rejected by {stage}: {by}", n) for stage, by, n in rejection_counts(samples)]


def _print_stats_extras(console: Any, stats: dict[str, Any]) -> None:
    """Counts the filter stage wrote besides the funnel's (the safety layers', per category), and
    each checked judge's verdict on the leaf's seeds."""
    from rich.markup import escape

    from labmake.sdg.judge_check import JudgeCheck

    safety = stats.get("safety")
    if isinstance(safety, dict) and safety.get("removed"):
        removed = "; ".join(
            f"{layer}: " + ", ".join(f"{cat} {n}" for cat, n in sorted(cats.items()))
            for layer, cats in sorted(safety["removed"].items())
            if cats
        )
        console.print(f"safety removed: {escape(removed or 'nothing')}")
    for block, check in sorted((stats.get("judge_checks") or {}).items()):
        text = JudgeCheck(check["auc"], check["pairs"], check["min_auc"]).describe(block)
        console.print(f"judge check: {escape(text)}")
    if stats.get("flagged") and stats.get("hint"):
        console.print(f"[yellow]flagged:[/] {escape(str(stats['hint']))}")
