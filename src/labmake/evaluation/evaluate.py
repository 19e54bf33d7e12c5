"""Stage (shared tail): did the model learn what the taxonomy teaches?

Every model of the build is scored on the same held-out items of build/data/eval.jsonl (seed
Q&A and generated samples, never trained on), one Snakemake job per model, each writing
build/eval/{model}.json:

- ``base``, ``phase-{name}`` (the base with the adapters up to that phase merged in) and
  ``tuned`` (the merged model), in Hugging Face form:
  - reference NLL: mean negative log-likelihood per token of the reference answer given the
    question (the trainer's own template and masking; deterministic, no judge);
  - knowledge multiple choice: the questions of build/data/multiple_choice.jsonl, written by
    the teacher from each knowledge leaf's documents (``labmake.sdg.multiple_choice``: one right
    option and wrong ones); the question is the user turn, each option an assistant answer, and
    the model "chooses" the option with the lowest mean NLL (no generation at scoring time).
- ``base`` (the student GGUF the build started from) and ``gguf-{quant}`` (every exported GGUF,
  F16 included), in llama.cpp: the greedy answer to each question, scored by token F1 and
  ROUGE-L against the reference and, when params.yaml names a judge, a 1-10 grade from it.

:func:`summarize` then puts the models side by side per leaf and overall, with paired bootstrap
confidence intervals for every difference to the base, and lists regressions (the tuned model
worse than the base beyond the interval, on reference NLL or multiple-choice accuracy).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from labmake.core import artifacts, paths
from labmake.core.config import EvaluateConfig, TeacherConfig
from labmake.core.hashing import derive_seed
from labmake.core.text import rouge_l as _rouge_l_tokens
from labmake.core.text import tokens
from labmake.teacher.base import Request, complete_all, open_teacher

log = logging.getLogger(__name__)

BASE = "base"
TUNED = "tuned"
PHASE_PREFIX = "phase-"
GGUF_PREFIX = "gguf-"
CHAT_MARGIN_TOKENS = 64  # a chat template's turn markers around a question
JUDGE_TEMPLATE = "judge_answer"
JUDGE_MAX_TOKENS = 12  # a grade is a number; a small cap also stops a rambling base model
JUDGE_ANSWER_CHARS = 600  # longer answers are cut in the judge prompt (the context is small)
# Metrics where the tuned model being worse than the base beyond the interval is a regression,
# and whether lower values are better. Answer-overlap metrics of greedy text are too noisy on a
# few items per leaf to gate a build; they are reported with their intervals.
GATED = {"reference_nll": True, "multiple_choice": False}
LOWER_IS_BETTER = {
    "reference_nll": True,
    "multiple_choice": False,
    "token_f1": False,
    "rouge_l": False,
    "judge": False,
}
METRIC_NOTES = {
    "reference_nll": "mean NLL (nats/token) of the reference answer given the question; lower "
    "is better (Hugging Face weights: base, each phase, tuned)",
    "multiple_choice": "accuracy on knowledge multiple choice: questions the teacher wrote from "
    "the knowledge leaves' documents, each with one right option and wrong ones (the teacher's, "
    "else other questions' answers of the leaf); the option with the lowest mean NLL is the "
    "model's choice; higher is better (Hugging Face weights)",
    "token_f1": "token F1 of the greedy answer against the reference; higher is better "
    "(llama.cpp: the student GGUF as base, every exported GGUF)",
    "rouge_l": "ROUGE-L F1 of the greedy answer against the reference; higher is better",
    "judge": "the judge's 1-10 grade of the greedy answer against the reference; higher is "
    "better; unparseable grades are left out and counted as missing",
    "ci": "percentile bootstrap interval of the mean over items (paired for deltas)",
}


# Settings only the report reads: changing them re-runs the report, not the models' scoring.
REPORT_KEYS = ("bootstrap_resamples", "confidence", "fail_on_regression")


class RegressionError(ValueError):
    """The tuned model is worse than the base beyond the interval (evaluate.fail_on_regression)."""


# --------------------------------------------------------------------------- models


def model_names(phases: Sequence[str], quants: Sequence[str]) -> list[str]:
    """Every model a build scores, in report order."""
    ggufs = dict.fromkeys(["F16", *quants])
    return [
        BASE,
        *(PHASE_PREFIX + p for p in phases),
        TUNED,
        *(GGUF_PREFIX + q for q in ggufs),
    ]


def model_inputs(
    model: str, phases: Sequence[str], student_gguf: str | None
) -> dict[str, str | list[str]]:
    """The artifacts one model's evaluation reads (the rule's inputs and :func:`run_model`'s).

    ``hf``: a Hugging Face folder; ``phases``: adapters merged into it in order; ``mc``: the
    knowledge multiple choice it answers (Hugging Face models only, so regenerating the
    questions never re-runs a GGUF's answers); ``gguf``: a GGUF to generate answers with. The
    base answers with the student GGUF itself; when that is the embedded default
    (``student_gguf`` None) it is resolved at run time, not a DAG file.
    """
    mc = paths.MULTIPLE_CHOICE
    if model == BASE:
        return {"hf": paths.BASE_DIR, "mc": mc, **({"gguf": student_gguf} if student_gguf else {})}
    if model == TUNED:
        return {"hf": paths.MERGED_DIR, "mc": mc}
    if model.startswith(PHASE_PREFIX) and model[len(PHASE_PREFIX) :] in phases:
        upto = list(phases)[: list(phases).index(model[len(PHASE_PREFIX) :]) + 1]
        return {
            "hf": paths.BASE_DIR,
            "phases": [paths.CHECKPOINT_DIR.format(phase=p) for p in upto],
            "mc": mc,
        }
    if model.startswith(GGUF_PREFIX):
        return {"gguf": paths.gguf(model[len(GGUF_PREFIX) :])}
    raise ValueError(f"unknown model {model!r} to evaluate; known: {model_names(phases, [])}")


# --------------------------------------------------------------------------- scores


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return 0.0
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 on the same tokens as token F1 (the filter stage's implementation)."""
    return _rouge_l_tokens(tokens(prediction), tokens(reference))


def conversation_nll(
    model: Any, tokenizer: Any, conversations: Sequence[list[dict]]
) -> list[float]:
    """Per conversation: mean NLL (nats/token) of its assistant turns given the rest.

    The scored tokens are exactly those the trainer takes its loss on (same template, same
    masking), so a lower number means the training objective generalised to these items.
    """
    from labmake.training.train import encode, sample_losses

    samples = [encode(tokenizer, messages) for messages in conversations]
    return [loss / max(n, 1) for loss, n in sample_losses(model, samples)]


def load_model(hf_dir: Path, phase_dirs: Sequence[Path] = ()) -> tuple[Any, Any]:
    from labmake.training.train import load_tuned

    model, tokenizer = load_tuned(Path(hf_dir), [Path(p) for p in phase_dirs])
    model.eval()
    return model, tokenizer


def reference_nll(
    model_dir: Path, items: Sequence[dict[str, Any]], phase_dirs: Sequence[Path] = ()
) -> list[float]:
    """Per item: mean NLL of the reference answer under ``model_dir`` (+ phase adapters)."""
    model, tokenizer = load_model(model_dir, phase_dirs)
    return conversation_nll(model, tokenizer, [item["messages"] for item in items])


# --------------------------------------------------------------------------- multiple choice


@dataclass(frozen=True)
class Choice:
    leaf: str
    question: str
    options: tuple[str, ...]
    correct: int  # index of the right option


def read_choices(mc_path: Path) -> list[Choice]:
    """The questions of build/data/multiple_choice.jsonl (see labmake.sdg.multiple_choice)."""
    return [
        Choice(item["leaf"], item["question"], tuple(item["options"]), int(item["correct"]))
        for item in artifacts.read_jsonl(mc_path)
    ]


def score_choices(model: Any, tokenizer: Any, choices: Sequence[Choice]) -> list[dict[str, Any]]:
    """Per question: each option's mean NLL as the answer to it, and the model's choice."""
    out = []
    for c in choices:
        prompt = {"role": "user", "content": c.question}
        nll = conversation_nll(
            model, tokenizer, [[prompt, {"role": "assistant", "content": o}] for o in c.options]
        )
        chosen = min(range(len(nll)), key=nll.__getitem__)
        out.append(
            {
                "leaf": c.leaf,
                "question": c.question,
                "options": list(c.options),
                "answer": c.correct,
                "option_nll": [round(v, 6) for v in nll],
                "chosen": chosen,
                "correct": chosen == c.correct,
            }
        )
    return out


# --------------------------------------------------------------------------- answers and judge


@dataclass(frozen=True)
class Answers:
    texts: list[str]
    completion_tokens: int
    seconds: float  # wall time of the whole generation loop (prompt + decoding)


def gguf_answers(gguf: Path, items: Sequence[dict[str, Any]], cfg: EvaluateConfig) -> Answers:
    """Greedy answers of a GGUF in llama.cpp, with the chat template stored in the GGUF."""
    from labmake.core.llama import open_llama, open_vocab

    # A context that fits the longest question (a grounded skill carries its context), from the
    # vocabulary alone (cheap); the margin covers the chat template's turn markers.
    vocab = open_vocab(gguf)
    try:
        longest = max(
            len(vocab.tokenize(" ".join(m["content"] for m in it["messages"]).encode("utf-8")))
            for it in items
        )
    finally:
        vocab.close()
    n_ctx = max(1024, longest + cfg.max_new_tokens + CHAT_MARGIN_TOKENS)
    llm = open_llama(gguf, n_ctx=n_ctx, n_threads=cfg.n_threads, seed=0)
    texts, n_tokens = [], 0
    started = time.perf_counter()
    try:
        for item in items:
            llm.reset()  # a cached prompt prefix can change a greedy output (FIELD-NOTES)
            out = llm.create_chat_completion(
                messages=item["messages"][:-1],
                max_tokens=cfg.max_new_tokens,
                temperature=0.0,
                seed=0,
            )
            texts.append((out["choices"][0]["message"]["content"] or "").strip())
            n_tokens += int(out["usage"]["completion_tokens"])
    finally:
        llm.close()
    return Answers(texts, n_tokens, time.perf_counter() - started)


@cache
def _prompts():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("labmake.evaluation", "prompts"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge_prompt(question: str, reference: str, answer: str) -> str:
    return (
        _prompts()
        .get_template(f"{JUDGE_TEMPLATE}.j2")
        .render(
            question=_one_line(question, JUDGE_ANSWER_CHARS),
            reference=_one_line(reference, JUDGE_ANSWER_CHARS),
            answer=_one_line(answer, JUDGE_ANSWER_CHARS) or "(no answer)",
        )
        .rstrip()
    )


_SCORE = re.compile(r"(?<![\d.])(\d{1,2}(?:\.\d+)?)(?:\s*(?:/|out of)\s*10\b)?", re.IGNORECASE)


def parse_score(text: str) -> int | None:
    """The 1-10 grade at the start of a judge's reply ("7", " 8/10", "Score: 9 - ..."), or None.

    Only the first line counts, and only its first number: a reply that starts with prose
    ("The answer is good, 9") or gives a number outside 1-10 is unparseable, not guessed at.
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    first = re.sub(r"^(score|grade|rating)\s*[:=]?\s*", "", first.strip(), flags=re.IGNORECASE)
    match = _SCORE.match(first)
    if not match:
        return None
    value = float(match.group(1))
    if not 1 <= value <= 10 or value != int(value):
        return None
    return int(value)


def judge_answers(
    judge: TeacherConfig, items: Sequence[dict[str, Any]], answers: Sequence[str], seed: int
) -> tuple[list[int | None], list[str], str]:
    """(grades, raw replies, judge identity). A grade's seed depends on the item and the answer
    only, so the same answer gets the same grade whichever model wrote it."""
    requests = [
        Request(
            judge_prompt(item["question"], item["answer"], answer),
            derive_seed(seed, "judge", item["leaf"], item["question"], answer),
            min(judge.max_tokens, JUDGE_MAX_TOKENS),
            ("\n",),
        )
        for item, answer in zip(items, answers, strict=True)
    ]
    teacher = open_teacher(judge)
    try:
        replies = [c.text for c in complete_all(teacher, requests, "judge")]
        identity = teacher.identity
    finally:
        teacher.close()
    return [parse_score(r) for r in replies], replies, identity


# --------------------------------------------------------------------------- one model


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


def _choices_of(result: dict[str, Any]) -> list[Choice]:
    return [
        Choice(q["leaf"], q["question"], tuple(q["options"]), q["answer"])
        for q in result["multiple_choice"]
    ]


def evaluate_model(
    model: str,
    items: Sequence[dict[str, Any]],
    cfg: EvaluateConfig,
    seed: int,
    *,
    hf_dir: Path | None = None,
    phase_dirs: Sequence[Path] = (),
    gguf: Path | None = None,
    choices: Sequence[Choice] = (),
) -> dict[str, Any]:
    """One model's per-item scores (what build/eval/{model}.json holds).

    Hugging Face models (``hf_dir``) also answer the knowledge multiple-choice ``choices``.
    """
    result: dict[str, Any] = {"model": model, "items": len(items)}
    if hf_dir is not None:
        log.info(
            "%s: reference NLL on %d items, multiple choice on %d questions",
            model,
            len(items),
            len(choices),
        )
        hf, tokenizer = load_model(hf_dir, phase_dirs)
        nll = conversation_nll(hf, tokenizer, [item["messages"] for item in items])
        result["reference_nll"] = [round(v, 6) for v in nll]
        result["multiple_choice"] = score_choices(hf, tokenizer, choices)
        del hf
    if gguf is not None:
        log.info("%s: generating answers with %s", model, gguf)
        answers = gguf_answers(gguf, items, cfg)
        refs = [item["answer"] for item in items]
        result["answers"] = answers.texts
        result["token_f1"] = [
            round(token_f1(a, r), 6) for a, r in zip(answers.texts, refs, strict=True)
        ]
        result["rouge_l"] = [
            round(rouge_l(a, r), 6) for a, r in zip(answers.texts, refs, strict=True)
        ]
        result["gguf"] = {"file": gguf.name, "bytes": gguf.stat().st_size}
        # Timings differ run to run: kept apart so report.json can leave them out.
        result["timing"] = {
            "completion_tokens": answers.completion_tokens,
            "seconds": round(answers.seconds, 3),
            "tokens_per_s": round(answers.completion_tokens / max(answers.seconds, 1e-9), 2),
        }
        log.info(
            "%s: %d tokens in %.1f s (%.1f tokens/s, prompt processing included; measured "
            "while other jobs may run)",
            model,
            answers.completion_tokens,
            answers.seconds,
            result["timing"]["tokens_per_s"],
        )
        if cfg.judge is not None:
            grades, replies, identity = judge_answers(cfg.judge, items, answers.texts, seed)
            result["judge"] = grades
            result["judge_raw"] = replies
            result["judge_identity"] = identity
            missing = sum(g is None for g in grades)
            if missing:
                log.warning(
                    "%s: %d of %d judge replies had no 1-10 grade", model, missing, len(grades)
                )
    return result


def run_model(
    model: str,
    eval_path: Path,
    cfg: EvaluateConfig,
    seed: int,
    out: Path,
    *,
    phases: Sequence[str],
    student_gguf: str | None,
) -> None:
    """Score one model (see :func:`model_inputs`) and write build/eval/{model}.json."""
    items = read_items(eval_path)
    inputs = model_inputs(model, phases, student_gguf)
    mc_path = Path(str(inputs["mc"])) if "mc" in inputs else None
    gguf: Path | None = Path(str(inputs["gguf"])) if "gguf" in inputs else None
    if model == BASE and gguf is None:
        from labmake.core.models import resolve_gguf

        gguf = resolve_gguf(None)
    result = evaluate_model(
        model,
        items,
        cfg,
        seed,
        hf_dir=Path(str(inputs["hf"])) if "hf" in inputs else None,
        phase_dirs=[Path(p) for p in inputs.get("phases", [])],
        gguf=gguf,
        choices=read_choices(mc_path) if mc_path is not None else (),
    )
    result["items_sha256"] = items_sha256(eval_path)
    if mc_path is not None:
        result["multiple_choice_sha256"] = artifacts.sha256_file(mc_path)
    artifacts.write_json(out, result)


# --------------------------------------------------------------------------- statistics


def bootstrap_ci(
    values: Sequence[float], *, resamples: int, confidence: float, seed: int
) -> list[float] | None:
    """Percentile bootstrap interval of the mean of ``values`` (None when there are none)."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return [round(float(low), 6), round(float(high), 6)]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def _stat(values: Sequence[float], cfg: EvaluateConfig, seed: int) -> dict[str, Any]:
    return {
        "mean": _mean(values),
        "ci": bootstrap_ci(
            values, resamples=cfg.bootstrap_resamples, confidence=cfg.confidence, seed=seed
        ),
        "n": len(values),
    }


def per_unit(results: dict[str, dict[str, Any]], metric: str) -> dict[str, list[float | None]]:
    """Model -> one value per scoring unit (item, or multiple-choice question) for ``metric``."""
    out: dict[str, list[float | None]] = {}
    for name, result in results.items():
        if metric == "multiple_choice" and "multiple_choice" in result:
            out[name] = [1.0 if q["correct"] else 0.0 for q in result["multiple_choice"]]
        elif metric in result and metric != "multiple_choice":
            out[name] = [None if v is None else float(v) for v in result[metric]]
    return out


def metric_block(
    values: dict[str, list[float | None]],
    units: Sequence[int],
    cfg: EvaluateConfig,
    seed: int,
    where: str,
    metric: str,
) -> dict[str, Any]:
    """Each model's mean with its interval on ``units``, and its paired delta to the base."""
    models = {}
    deltas = {}
    for name, vals in values.items():
        present = [float(v) for u in units if (v := vals[u]) is not None]
        models[name] = _stat(present, cfg, derive_seed(seed, "bootstrap", metric, where, name))
        if name != BASE and BASE in values:
            base = values[BASE]
            diffs = [
                float(vals[u]) - float(base[u])  # type: ignore[arg-type]
                for u in units
                if vals[u] is not None and base[u] is not None
            ]
            deltas[name] = _stat(
                diffs, cfg, derive_seed(seed, "bootstrap", metric, where, name, "delta")
            )
        missing = sum(vals[u] is None for u in units)
        if missing:
            models[name]["missing"] = missing
    block: dict[str, Any] = {"models": models, "lower_is_better": LOWER_IS_BETTER[metric]}
    if deltas:
        block["delta"] = deltas
    return block


def _regressed(metric: str, delta: dict[str, Any]) -> bool:
    ci = delta.get("ci")
    if ci is None:
        return False
    # Worse beyond the interval: the whole interval of (tuned - base) lies on the worse side.
    return ci[0] > 0 if LOWER_IS_BETTER[metric] else ci[1] < 0


def _shared_choices(results: dict[str, dict[str, Any]]) -> list[Choice]:
    """The multiple-choice questions every model answered (each model's file records them)."""
    seen = {name: _choices_of(r) for name, r in results.items() if "multiple_choice" in r}
    if not seen:
        return []
    first_name, first = next(iter(seen.items()))
    for name, choices in seen.items():
        if choices != first:
            raise ValueError(
                f"build/eval/{name}.json and build/eval/{first_name}.json answered different "
                "multiple-choice questions; rebuild them (snakemake --forcerun evaluate)"
            )
    return first


def summarize(
    items: Sequence[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    cfg: EvaluateConfig,
    seed: int,
) -> dict[str, Any]:
    """All models side by side, per leaf and overall; regressions; sample answers.

    Only deterministic values: no timings (those stay in build/eval/{model}.json and the HTML
    report), so two builds of the same inputs give the same bytes.
    """
    choices = _shared_choices(results)
    leaf_of_unit = {
        "items": [item["leaf"] for item in items],
        "choices": [c.leaf for c in choices],
    }
    values = {m: per_unit(results, m) for m in LOWER_IS_BETTER}

    def scores(leaf: str | None) -> dict[str, Any]:
        where = leaf or "overall"
        out: dict[str, Any] = {}
        for metric, by_model in values.items():
            if not by_model:
                continue
            kind = "choices" if metric == "multiple_choice" else "items"
            units = [u for u, lf in enumerate(leaf_of_unit[kind]) if leaf in (None, lf)]
            if not units:
                continue
            out[metric] = metric_block(by_model, units, cfg, seed, where, metric)
        out["n"] = sum(1 for lf in leaf_of_unit["items"] if leaf in (None, lf))
        out["n_multiple_choice"] = sum(1 for lf in leaf_of_unit["choices"] if leaf in (None, lf))
        return out

    leaves = {
        leaf: scores(leaf) for leaf in sorted({*leaf_of_unit["items"], *leaf_of_unit["choices"]})
    }
    overall = scores(None)
    regressions = []
    for where, block in [("overall", overall), *leaves.items()]:
        for metric in GATED:
            delta = block.get(metric, {}).get("delta", {}).get(TUNED)
            if delta and _regressed(metric, delta):
                regressions.append(
                    {"leaf": where, "metric": metric, "delta": delta["mean"], "ci": delta["ci"]}
                )
    gguf_models = [m for m, r in results.items() if "answers" in r]
    judges = sorted({r["judge_identity"] for r in results.values() if "judge_identity" in r})
    return {
        "settings": {
            "bootstrap_resamples": cfg.bootstrap_resamples,
            "confidence": cfg.confidence,
            "judge": ",".join(judges) or None,
            "seed": seed,
        },
        "metric_notes": METRIC_NOTES,
        "models": {
            name: {
                "scores": sorted(k for k in LOWER_IS_BETTER if k in values and name in values[k]),
                **({"gguf": r["gguf"]} if "gguf" in r else {}),
            }
            for name, r in results.items()
        },
        "overall": overall,
        "leaves": leaves,
        "regressions": regressions,
        "improved_leaves": sorted(
            leaf
            for leaf, s in leaves.items()
            if (d := s.get("reference_nll", {}).get("delta", {}).get(TUNED))
            and d["mean"] is not None
            and d["mean"] < 0
        ),
        "multiple_choice": [
            {
                "leaf": c.leaf,
                "question": c.question,
                "options": list(c.options),
                "correct": c.correct,
                "chosen": {
                    name: r["multiple_choice"][k]["chosen"]
                    for name, r in results.items()
                    if "multiple_choice" in r
                },
            }
            for k, c in enumerate(choices)
        ],
        "samples": [
            {
                "leaf": item["leaf"],
                "question": item["question"],
                "reference": item["answer"],
                "answers": {m: results[m]["answers"][i] for m in gguf_models},
                **(
                    {
                        "judge": {
                            m: results[m]["judge"][i] for m in gguf_models if "judge" in results[m]
                        }
                    }
                    if judges
                    else {}
                ),
            }
            for i, item in enumerate(items)
        ],
    }


def describe_regressions(regressions: Sequence[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r['leaf']}: {r['metric']} tuned-base {r['delta']:+.4f} "
        f"(CI {r['ci'][0]:+.4f}..{r['ci'][1]:+.4f})"
        for r in regressions
    )


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


def log_summary(report: dict[str, Any]) -> None:
    overall = report["overall"]
    nll = overall.get("reference_nll")
    if nll and TUNED in nll.get("delta", {}):
        d = nll["delta"][TUNED]
        log.info(
            "reference NLL: base %.4f -> tuned %.4f (delta %+.4f, %d%% CI %s)",
            nll["models"][BASE]["mean"],
            nll["models"][TUNED]["mean"],
            d["mean"],
            round(100 * report["settings"]["confidence"]),
            d["ci"],
        )
    for leaf, block in report["leaves"].items():
        d = block.get("reference_nll", {}).get("delta", {}).get(TUNED)
        if d:
            log.info("  %s: NLL delta %+.4f CI %s", leaf, d["mean"], d["ci"])
    if report["regressions"]:
        bar = "!" * 78
        log.warning(
            "%s\nREGRESSION: the tuned model is worse than the base beyond the interval: %s\n%s",
            bar,
            describe_regressions(report["regressions"]),
            bar,
        )
