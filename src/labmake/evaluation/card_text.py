"""The model card's sections, as Markdown, from the facts :mod:`labmake.evaluation.model_card`
reads. Plain functions of plain data: the same facts always give the same text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

TOOLCHAIN_PREFIX = "labmake.toolchain."


def _n(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _ci(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    ci = stat.get("ci") or [stat["mean"], stat["mean"]]
    return f"{stat['mean']:+.{digits}f} [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"


def taught_section(leaves: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "## What it was taught",
        "",
        "| leaf | kind | seed examples | documents | generated samples kept | records trained on "
        "| held out for evaluation |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for leaf in leaves:
        lines.append(
            f"| `{leaf['leaf']}` | {leaf['kind']} | {leaf['seed_examples']} | "
            f"{', '.join(leaf['documents']) or '–'} | {_n(leaf['generated_kept'])} | "
            f"{leaf['trained_records']} | {_n(leaf['held_out'])} |"
        )
    lines += [
        "",
        "Knowledge records are trained in each form `mix.knowledge_forms` lists (closed book, "
        "with the document chunk, ...); held-out items are never trained on in any form.",
        "",
    ]
    return "\n".join(lines)


def _phase_row(p: Mapping[str, Any]) -> str:
    sel = p.get("selected", {})
    steps = p.get("max_steps") or f"{p.get('epochs')} epoch(s)"
    return (
        f"| {p['name']} | {p['dataset']} | {p['method']} | {steps} | {p['learning_rate']} | "
        f"{p.get('replay_ratio', 0)} | {sel.get('step', '–')} of {sel.get('of_steps', '–')} "
        f"({str(sel.get('by', 'last_step')).replace('_', ' ')}) |"
    )


def made_section(
    meta: Mapping[str, Any], phases: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
) -> str:
    toolchain = {
        k[len(TOOLCHAIN_PREFIX) :]: v for k, v in meta.items() if k.startswith(TOOLCHAIN_PREFIX)
    }
    lines = [
        "## How it was made",
        "",
        f"- teacher: `{meta.get('labmake.teacher', 'unknown')}`",
        f"- taxonomy: commit `{meta.get('labmake.taxonomy_commit', 'unknown')}`, "
        f"sha256 `{meta.get('labmake.taxonomy_sha256', 'unknown')}`",
        f"- params.yaml sha256 `{meta.get('labmake.params_sha256', 'unknown')}`; "
        f"datasets: {', '.join(f'{k.rsplit(chr(46), 1)[1]} {v}' for k, v in meta.items() if k.startswith('labmake.dataset.'))}",
        "",
        "| phase | dataset | method | steps | learning rate | replay | kept checkpoint |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
        *(_phase_row(p) for p in phases),
        "",
        "Toolchain (`labmake.toolchain.*` in every GGUF):",
        "",
        "| package | version |",
        "| --- | --- |",
        *(f"| {k} | `{v}` |" for k, v in sorted(toolchain.items())),
        "",
        "<details><summary>params.yaml as built</summary>",
        "",
        "```yaml",
        yaml.safe_dump(params, sort_keys=True, default_flow_style=None).rstrip(),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


def _leaf_rows(report: Mapping[str, Any], ggufs: Sequence[str]) -> list[str]:
    rows = []
    for name, block in [
        ("**overall**", report.get("overall", {})),
        *report.get("leaves", {}).items(),
    ]:
        nll = block.get("reference_nll", {})
        mc = block.get("multiple_choice", {}).get("models", {})
        f1 = block.get("token_f1", {}).get("models", {})
        leaf = name if name.startswith("**") else f"`{name}`"
        rows.append(
            f"| {leaf} | {block.get('n', '–')} | {_n(nll.get('models', {}).get('base', {}).get('mean'))} | "
            f"{_n(nll.get('models', {}).get('tuned', {}).get('mean'))} | "
            f"{_ci(nll.get('delta', {}).get('tuned'))} | "
            f"{_mc(mc)} | " + " | ".join(_n(f1.get(g, {}).get("mean"), 2) for g in ggufs) + " |"
        )
    return rows


def _mc(models: Mapping[str, Any]) -> str:
    if not models:
        return "–"
    base, tuned = (models.get(m, {}).get("mean") for m in ("base", "tuned"))
    return f"{_n(base, 2)} → {_n(tuned, 2)}"


def _kept_lines(kept: Mapping[str, Any] | None) -> list[str]:
    if not kept:
        return []
    lines = [
        "",
        f"What each knowledge leaf kept of its `{kept['knowledge_phase']}`-phase gain after the "
        "later phases (flagged below 50%):",
        "",
        "| leaf | NLL base | after knowledge | final | kept |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for leaf, v in kept["leaves"].items():
        share = "–" if v["kept"] is None else f"{100 * v['kept']:.0f}%"
        flag = " (flagged)" if v["flagged"] else ""
        lines.append(
            f"| `{leaf}` | {_n(v['base'])} | {_n(v['after_knowledge'])} | {_n(v['final'])} | "
            f"{share}{flag} |"
        )
    return lines


def _retention_lines(section: Mapping[str, Any] | None) -> list[str]:
    if not section:
        return []
    kl = section["general"]["kl"]["models"]
    lines = [
        "",
        f"Drift from the base on general text no leaf taught ({section['prompts']} prompts; "
        "KL(base || model) per token, in nats, on continuations the base itself wrote; 0 = "
        "no drift; it says how far the model moved, not whether it got better or worse):",
        "",
        "| model | KL to the base [95% CI] |",
        "| --- | --- |",
        *(f"| {m} | {s['mean']:.4f} [{s['ci'][0]:.4f}, {s['ci'][1]:.4f}] |" for m, s in kl.items()),
    ]
    return lines


def scores_section(report: Mapping[str, Any]) -> str:
    ggufs = [m for m in report.get("models", {}) if m.startswith("gguf-")]
    conf = round(100 * report.get("settings", {}).get("confidence", 0.95))
    lines = [
        "## How it scored",
        "",
        "On items held out of training (seed Q&A and generated samples). Reference NLL in "
        f"nats/token (lower is better), tuned − base with its {conf}% paired bootstrap "
        "interval; knowledge multiple-choice accuracy (base → tuned); token F1 of each GGUF's "
        "greedy answer. With a few items per leaf, read the intervals before the means.",
        "",
        "| leaf | n | NLL base | NLL tuned | tuned − base | MC | "
        + " | ".join(f"F1 {g[5:]}" for g in ggufs)
        + " |",
        "| --- | ---: | ---: | ---: | --- | --- |" + " ---: |" * len(ggufs),
        *_leaf_rows(report, ggufs),
        *_kept_lines(report.get("knowledge_kept")),
        *_retention_lines(report.get("retention")),
        "",
    ]
    regressions = report.get("regressions") or []
    if regressions:
        lines += [
            "Regressions (worse than the base beyond the interval): "
            + "; ".join(f"`{r['leaf']}` {r['metric']}" for r in regressions),
            "",
        ]
    return "\n".join(lines)


def license_section(licence: str | None, base: str) -> str:
    if licence == "gemma":
        terms = (
            f"This model is a derivative of {base}, a Gemma model: its use is subject to the "
            "[Gemma Terms of Use](https://ai.google.dev/gemma/terms) and the Gemma Prohibited "
            "Use Policy, which pass on to anyone you give it to. labmake adds no terms of its own."
        )
    elif licence:
        terms = (
            f"This model is a derivative of {base}, whose GGUF names the licence `{licence}`: "
            "its terms apply to this model. labmake adds no terms of its own."
        )
    else:
        terms = (
            f"This model is a derivative of {base}, whose GGUF names no licence: the base "
            "model's own terms apply (see where you got it). labmake adds no terms of its own."
        )
    return "\n".join(["## Licence", "", terms, ""])


def run_section(chosen: Mapping[str, Any], files: Sequence[str]) -> str:
    gguf = chosen.get("file", files[0] if files else "model.gguf")
    lines = [
        "## How to run it",
        "",
        f"`{gguf}` answered the held-out questions best ({chosen.get('why', 'the only file')}); "
        f"every file here runs the same way.",
        "",
        "llama.cpp:",
        "",
        "```sh",
        f"llama-cli -m {gguf} -cnv",
        f"llama-server -m {gguf} --port 8000",
        "```",
        "",
        "labmake (from the project's root, with its environment):",
        "",
        "```sh",
        f"labmake chat build/model/{gguf}",
        f"labmake serve build/model/{gguf}",
        "```",
        "",
        "Ollama (the `Modelfile` beside this card carries the chat template and stop tokens):",
        "",
        "```sh",
        "ollama create my-model -f Modelfile",
        "ollama run my-model",
        "```",
        "",
    ]
    return "\n".join(lines)


def limits_section(report: Mapping[str, Any]) -> str:
    kept = report.get("knowledge_kept") or {}
    flagged = kept.get("flagged") or []
    lines = [
        "## Limitations",
        "",
        "The scores above are on a few held-out items of this taxonomy and on drift from the "
        "base over general text; no other benchmark or safety evaluation is implied. The "
        "training data was written by a teacher model and kept by filters and judges: facts in "
        "it, and so in the model's answers, can be wrong. Check the answers in `report.html` "
        "before you rely on the model.",
        "",
    ]
    if flagged:
        lines += [
            "Flagged: "
            + ", ".join(f"`{leaf}`" for leaf in flagged)
            + " lost more than half of what the knowledge phase taught.",
            "",
        ]
    return "\n".join(lines)
