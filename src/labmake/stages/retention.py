"""rules/retention.smk: the base's reference for the drift measure, and lm-evaluation-harness."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import LmEvalConfig, RetentionConfig
from labmake.stages import Job, typed


def retention_reference(job: Job) -> None:
    """build/data/retention.jsonl: general prompts with the base's own continuations and top-k
    log-probs, and the user's general Q&A, tokenized once for every model's evaluation."""
    from labmake.core.models import resolve_gguf
    from labmake.evaluation import retention

    with logs.stage(job.log[0], "retention_reference", job.threads):
        retention.build_reference(
            Path(job.input.base),
            resolve_gguf(job.params.student),
            typed(RetentionConfig, job, "retention", "evaluate.retention"),
            job.params.seed,
            Path(job.output[0]),
            n_threads=job.threads,
        )


def lm_eval(job: Job) -> None:
    """build/eval/lm-eval/{model}.json: the named lm-evaluation-harness tasks on one model."""
    from labmake.evaluation import harness

    with logs.stage(job.log[0], f"lm_eval {job.wildcards.model}", job.threads):
        harness.run_model(
            job.wildcards.model,
            Path(job.input.hf),
            typed(LmEvalConfig, job, "lm_eval", "evaluate.lm_eval"),
            job.params.seed,
            Path(job.output[0]),
        )
