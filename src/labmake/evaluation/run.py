"""One model's evaluation job: every score of one model, written to build/eval/{model}.json.

Hugging Face models are scored by likelihood (reference NLL, multiple choice), GGUFs by their
greedy answers (token F1, ROUGE-L, the optional judge); the base is both. The file records the
hashes of the items and questions it scored, which the report checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.core.config import EvaluateConfig, TeacherConfig
from labmake.evaluation import retention
from labmake.evaluation.answers import hf_answers
from labmake.evaluation.gguf_eval import GgufEvaluator, open_evaluator
from labmake.evaluation.judge import judge_answers
from labmake.evaluation.models import BASE, model_inputs
from labmake.evaluation.multiple_choice import Choice, read_choices, score_choices
from labmake.evaluation.results import items_sha256, read_items
from labmake.evaluation.scores import conversation_nll, load_model, rouge_l, token_f1

log = logging.getLogger(__name__)


def _likelihood_scores(
    model: str,
    items: Sequence[dict[str, Any]],
    hf_dir: Path,
    phase_dirs: Sequence[Path],
    choices: Sequence[Choice],
    answers: EvaluateConfig | None = None,
    retention_reference: Path | None = None,
) -> dict[str, Any]:
    """Reference NLL per item and the multiple-choice answers of a Hugging Face model; with
    ``answers`` (``evaluate.hf_answers``), its greedy answers too."""
    log.info(
        "%s: reference NLL on %d items, multiple choice on %d questions",
        model,
        len(items),
        len(choices),
    )
    hf, tokenizer = load_model(hf_dir, phase_dirs)
    nll = conversation_nll(hf, tokenizer, [item["messages"] for item in items])
    scores = {
        "reference_nll": [round(v, 6) for v in nll],
        "multiple_choice": score_choices(hf, tokenizer, choices),
    }
    if answers:
        scores["hf_answers"] = hf_answers(hf, tokenizer, items, answers).texts
    if retention_reference is not None:  # drift from the base (evaluation.retention)
        scores |= retention.score(retention_reference, model=hf)
    return scores


def _answer_scores(
    model: str, items: Sequence[dict[str, Any]], evaluator: GgufEvaluator, gguf: Path
) -> dict[str, Any]:
    """A GGUF's greedy answers, their overlap with the references, its size and speed."""
    log.info("%s: generating answers with %s", model, gguf)
    answers = evaluator.answers(items)
    refs = [item["answer"] for item in items]
    tokens_per_s = round(answers.completion_tokens / max(answers.seconds, 1e-9), 2)
    log.info(
        "%s: %d tokens in %.1f s (%.1f tokens/s, prompt processing included; measured "
        "while other jobs may run)",
        model,
        answers.completion_tokens,
        answers.seconds,
        tokens_per_s,
    )
    return {
        "answers": answers.texts,
        "token_f1": [round(token_f1(a, r), 6) for a, r in zip(answers.texts, refs, strict=True)],
        "rouge_l": [round(rouge_l(a, r), 6) for a, r in zip(answers.texts, refs, strict=True)],
        "gguf": {"file": gguf.name, "bytes": gguf.stat().st_size},
        # Timings differ run to run: kept apart so report.json can leave them out.
        "timing": {
            "completion_tokens": answers.completion_tokens,
            "seconds": round(answers.seconds, 3),
            "tokens_per_s": tokens_per_s,
        },
    }


def _gguf_scores(
    model: str,
    items: Sequence[dict[str, Any]],
    cfg: EvaluateConfig,
    gguf: Path,
    hf_dir: Path | None,
    retention_reference: Path | None,
) -> dict[str, Any]:
    """A GGUF's answers and, for a GGUF alone (no Hugging Face folder scored it), its retention:
    one load serves both unless the answers run on a GPU (retention stays on the CPU, the
    device every reference was computed on)."""
    from labmake.training.chat_template import folder_template

    # The base answers in the template training used (its GGUF may carry another, or none).
    template = folder_template(hf_dir) if hf_dir is not None else None
    scored = retention_reference is not None and hf_dir is None
    lengths = retention.sequence_lengths(retention_reference) if scored else []
    shared = cfg.n_gpu_layers == 0
    with open_evaluator(
        gguf, items, cfg, chat_template=template, token_counts=lengths if shared else ()
    ) as evaluator:
        scores = _answer_scores(model, items, evaluator, gguf)
        if scored and shared:
            scores |= retention.score(retention_reference, evaluator=evaluator)
    if scored and not shared:
        scores |= retention.score(retention_reference, gguf=gguf, n_threads=cfg.n_threads)
    return scores


def _judge_scores(
    model: str,
    items: Sequence[dict[str, Any]],
    judge: TeacherConfig,
    answers: Sequence[str],
    seed: int,
) -> dict[str, Any]:
    grades, replies, identity = judge_answers(judge, items, answers, seed)
    missing = sum(g is None for g in grades)
    if missing:
        log.warning("%s: %d of %d judge replies had no 1-10 grade", model, missing, len(grades))
    return {"judge": grades, "judge_raw": replies, "judge_identity": identity}


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
    retention_reference: Path | None = None,
) -> dict[str, Any]:
    """One model's per-item scores (what build/eval/{model}.json holds).

    Hugging Face models (``hf_dir``) also answer the knowledge multiple-choice ``choices``.
    """
    result: dict[str, Any] = {"model": model, "items": len(items)}
    if hf_dir is not None:
        answers = cfg if cfg.hf_answers else None
        result |= _likelihood_scores(
            model, items, hf_dir, phase_dirs, choices, answers, retention_reference
        )
    if gguf is not None:
        result |= _gguf_scores(model, items, cfg, gguf, hf_dir, retention_reference)
        if cfg.judge is not None:
            result |= _judge_scores(model, items, cfg.judge, result["answers"], seed)
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
    retention_reference: Path | None = None,
) -> None:
    """Score one model (see :func:`labmake.evaluation.models.model_inputs`) and write
    build/eval/{model}.json."""
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
        retention_reference=retention_reference,
    )
    result["items_sha256"] = items_sha256(eval_path)
    if mc_path is not None:
        result["multiple_choice_sha256"] = artifacts.sha256_file(mc_path)
    artifacts.write_json(out, result)
