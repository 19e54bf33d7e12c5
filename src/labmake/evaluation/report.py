"""The build report: build/eval/report.json for tools and build/report.html for a person.

report.json is :func:`labmake.evaluation.summary.summarize` of every model's scores. report.html
is one self-contained file (plots are inline SVG data URIs, no external requests) that shows what
went into the build, the synthetic-data funnel of every leaf, the training loss of every phase,
the evaluation per leaf with confidence intervals, the GGUF files with their speed, and the time
each stage took. Everything in it is deterministic except the measured speeds and stage
timings, which the page marks as such.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from labmake import __version__
from labmake.core import artifacts, paths
from labmake.core.config import EvaluateConfig
from labmake.evaluation import cost_views, retention_report
from labmake.evaluation.build_facts import BuildFacts, read_build
from labmake.evaluation.metrics import LOWER_IS_BETTER
from labmake.evaluation.models import BASE, TUNED
from labmake.evaluation.plots import (
    plot_funnels,
    plot_ggufs,
    plot_losses,
    plot_metric,
    plot_timings,
    short_leaf,
)
from labmake.evaluation.results import load_results, read_items
from labmake.evaluation.summary import RegressionError, describe_regressions, log_summary, summarize

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"


@cache
def _templates():  # type: ignore[no-untyped-def]
    from jinja2 import PackageLoader, StrictUndefined, select_autoescape
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Sandboxed like every template labmake renders: leaf names and answers are community input.
    env = ImmutableSandboxedEnvironment(
        loader=PackageLoader("labmake.evaluation", "templates"),
        undefined=StrictUndefined,
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["short"] = short_leaf
    return env


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def _without_credentials(value: Any) -> Any:
    """params as the page shows them: no ``user:password@`` in a URL. params.yaml refuses
    them (keys come from ``api_key_env``); this keeps one that got in anyway off the page."""
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub("", value)
    if isinstance(value, dict):
        return {k: _without_credentials(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_credentials(v) for v in value]
    return value


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def gguf_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, r in results.items():
        if "gguf" not in r:
            continue
        timing = r.get("timing", {})
        rows.append(
            {
                "model": name,
                "file": r["gguf"]["file"],
                "bytes": r["gguf"]["bytes"],
                "tokens_per_s": timing.get("tokens_per_s"),
                "completion_tokens": timing.get("completion_tokens"),
                "seconds": timing.get("seconds"),
            }
        )
    return rows


def render_html(
    report: dict[str, Any], results: dict[str, dict[str, Any]], facts: BuildFacts
) -> str:
    hf_models = [m for m in results if "reference_nll" in results[m]]
    answer_models = [m for m in results if "answers" in results[m]]
    ggufs = gguf_rows(results)
    plots = {
        "funnels": plot_funnels(facts.funnels),
        "losses": plot_losses(facts.losses, facts.checkpoints),
        "nll": plot_metric(report, "reference_nll", hf_models, "reference NLL (lower is better)"),
        "mc": plot_metric(report, "multiple_choice", hf_models, "multiple-choice accuracy", 1.0),
        "f1": plot_metric(report, "token_f1", answer_models, "token F1 of the answer", 1.0),
        "rouge": plot_metric(report, "rouge_l", answer_models, "ROUGE-L of the answer", 1.0),
        "judge": plot_metric(report, "judge", answer_models, "judge grade (1-10)", 10.0),
        "ggufs": plot_ggufs(ggufs),
        "timings": plot_timings(facts.timings),
        "retention": cost_views.plot_retention(report),
    }
    return (
        _templates()
        .get_template(TEMPLATE)
        .render(
            report=report,
            facts=facts,
            plots=plots,
            hf_models=hf_models,
            answer_models=answer_models,
            ggufs=ggufs,
            labmake_version=__version__,
            params_yaml=yaml.safe_dump(
                _without_credentials(facts.params), sort_keys=True, default_flow_style=None
            ),
            metrics=list(LOWER_IS_BETTER),
            tuned=TUNED,
            base=BASE,
            confidence=round(100 * report["settings"]["confidence"]),
        )
    )


def flagged_leaves(facts: BuildFacts) -> list[dict[str, Any]]:
    """Leaves the filters left with few or no samples (filter.flag_below): the build went on
    without their generated data; report.json lists them, the page shows them on top."""
    flagged = [
        {"leaf": f["leaf"], "kept": f["kept"], "hint": f["hint"]}
        for f in facts.funnels
        if f["flagged"]
    ]
    for leaf in flagged:
        log.warning("flagged leaf: %s", leaf["hint"])
    return flagged


def judges_off(facts: BuildFacts) -> list[dict[str, Any]]:
    """Leaves whose checked judge could not tell their seeds from swapped ones, so it judged none
    of their samples (labmake.sdg.judge_check): what report.json lists as ``judges_off``."""
    return [
        {"leaf": f["leaf"], "judge": name, "auc": check["auc"], "min_auc": check["min_auc"]}
        for f in facts.funnels
        for name, check in sorted(f.get("judge_checks", {}).items())
        if not check["used"]
    ]


def run(
    inputs: Mapping[str, str | Sequence[str]],
    *,
    cfg: EvaluateConfig,
    seed: int,
    params: dict[str, Any],
    out_json: Path,
    out_html: Path,
    benchmarks: Path = Path(paths.BENCHMARKS),
) -> dict[str, Any]:
    """Aggregate every model's scores, write report.json and report.html, then (only then)
    fail on a regression when params.yaml asks for it.

    ``inputs`` are the report rule's named inputs: ``eval``, ``mc`` (multiple_choice.jsonl),
    ``models`` (build/eval/{model}.json),
    ``f16``, ``seeds``, ``filter_stats``, ``checkpoints``, ``mix_stats``.
    """

    def many(name: str) -> list[Path]:
        value = inputs.get(name, [])
        return [Path(value)] if isinstance(value, str) else [Path(v) for v in value]

    eval_path = Path(str(inputs["eval"]))
    facts = read_build(
        f16=Path(str(inputs["f16"])) if inputs.get("f16") else None,
        seeds=many("seeds"),
        filter_stats=many("filter_stats"),
        checkpoints=many("checkpoints"),
        mix_stats=Path(str(inputs["mix_stats"])) if inputs.get("mix_stats") else None,
        benchmarks=benchmarks,
        params=params,
    )
    items = read_items(eval_path)
    mc_path = Path(str(inputs["mc"])) if inputs.get("mc") else None
    results = load_results(many("models"), eval_path, mc_path)
    report = summarize(items, results, cfg, seed) | {
        "flagged_leaves": flagged_leaves(facts),
        "judges_off": judges_off(facts),
    }
    log_summary(report)
    report |= retention_report.sections(items, results, cfg, seed, params=params, inputs=inputs)
    artifacts.write_json(out_json, report)
    artifacts.write_text_atomic(out_html, render_html(report, results, facts))
    log.info("wrote %s and %s", out_json, out_html)
    retention_report.log_and_check(report, out_html, params)  # tracking, max_retention_loss
    if report["regressions"] and cfg.fail_on_regression:
        raise RegressionError(
            "the tuned model is worse than the base beyond the interval: "
            + describe_regressions(report["regressions"])
            + f" (see {out_html}; Snakemake removes a failed job's outputs, so rerun with "
            "--keep-incomplete to keep them). Set evaluate.fail_on_regression: false in "
            "params.yaml to report regressions without failing."
        )
    return report
