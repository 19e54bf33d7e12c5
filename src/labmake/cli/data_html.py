"""``labmake data show --html FILE``: a leaf's samples as one self-contained page.

Rendered in Jinja2's sandbox with autoescaping, like every page labmake writes: questions,
answers and the teacher's text are community and model input. Inline CSS only, no scripts, no
external requests.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from labmake import __version__
from labmake.cli.samples import LeafSamples, Sample, rejection_counts
from labmake.core import artifacts

TEMPLATE = "data_show.html.j2"


@cache
def _templates():  # type: ignore[no-untyped-def]
    from jinja2 import PackageLoader, StrictUndefined, select_autoescape
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        loader=PackageLoader("labmake.cli", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _extra(value: Any) -> str:
    """A record's extra field (the teacher's raw text, the safety findings) as plain text."""
    if isinstance(value, str):
        return value
    return artifacts.dumps(value)


def _row(sample: Sample) -> dict[str, Any]:
    return {
        "id": sample.id,
        "status": sample.status,
        "stage": sample.stage,
        "by": sample.by,
        "reason": sample.reason,
        "question": sample.question,
        "answer": sample.answer,
        "context": sample.context,
        "scores": sorted(sample.scores.items()),
        "extras": [(k, _extra(v)) for k, v in sorted(sample.extras.items())],
    }


def render_page(data: LeafSamples, shown: list[Sample], build_root: Path) -> str:
    return (
        _templates()
        .get_template(TEMPLATE)
        .render(
            leaf=data.leaf,
            build=str(build_root),
            funnel=list(data.funnel.items()),
            rejections=rejection_counts(data.samples),
            notes=data.notes,
            total=len(data.samples),
            samples=[_row(s) for s in shown],
            safety=data.stats.get("safety") if isinstance(data.stats.get("safety"), dict) else None,
            hint=data.stats.get("hint") if data.stats.get("flagged") else None,
            version=__version__,
        )
    )


def write_page(out: Path, data: LeafSamples, shown: list[Sample], build_root: Path) -> None:
    artifacts.write_text_atomic(out, render_page(data, shown, build_root))
