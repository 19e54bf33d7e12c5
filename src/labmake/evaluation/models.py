"""Which models a build evaluates and what each one reads: the evaluation stage's DAG wiring.

rules/evaluate.smk imports this module while Snakemake parses the workflow, so it stays free
of heavy imports: names and paths only.
"""

from __future__ import annotations

from collections.abc import Sequence

from labmake.core import paths

BASE = "base"
TUNED = "tuned"
PHASE_PREFIX = "phase-"
GGUF_PREFIX = "gguf-"

# Settings only the report reads: changing them re-runs the report, not the models' scoring.
REPORT_KEYS = ("bootstrap_resamples", "confidence", "fail_on_regression", "max_retention_loss")
# Settings of rules of their own (retention_reference, lm_eval): they reach a model's scoring
# through those rules' files, so they re-run only what reads them.
OWN_RULE_KEYS = ("retention", "lm_eval")


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
    """The artifacts one model's evaluation reads (the rule's inputs and
    :func:`labmake.evaluation.run.run_model`'s).

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
