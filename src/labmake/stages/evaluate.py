"""rules/evaluate.smk: knowledge multiple choice, every model scored, the report, the manifest."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.core.config import EvaluateConfig, MultipleChoiceConfig, TeacherConfig
from labmake.stages import Job, typed


def generate_multiple_choice(job: Job) -> None:
    """build/mc/{leaf}.jsonl: multiple-choice questions the teacher wrote from the leaf's
    documents (evaluation data only)."""
    from labmake.sdg import multiple_choice

    with logs.stage(job.log[0], "generate_multiple_choice", job.threads):
        multiple_choice.run(
            Path(job.input.seeds),
            Path(job.output[0]),
            typed(TeacherConfig, job, "teacher"),
            typed(MultipleChoiceConfig, job, "multiple_choice", "evaluate.multiple_choice"),
            job.params.seed,
        )


def multiple_choice(job: Job) -> None:
    """build/data/multiple_choice.jsonl: every knowledge leaf's questions, in a stable order."""
    from labmake.sdg import multiple_choice as questions

    with logs.stage(job.log[0], "multiple_choice"):
        questions.aggregate([Path(p) for p in job.input.leaves], Path(job.output[0]))


def evaluate(job: Job) -> None:
    """build/eval/{model}.json: one model's scores on the held-out items."""
    from labmake.evaluation import run as scoring

    with logs.stage(job.log[0], f"evaluate {job.wildcards.model}", job.threads):
        scoring.run_model(
            job.wildcards.model,
            Path(job.input.eval),
            typed(EvaluateConfig, job, "evaluate"),
            job.params.seed,
            Path(job.output[0]),
            phases=job.params.phases,
            student_gguf=job.params.student,
            retention_reference=Path(job.input.retention),
        )


def report(job: Job) -> None:
    """build/eval/report.json and build/report.html: base against tuned, per leaf."""
    from labmake.evaluation import report as reporting

    with logs.stage(job.log[0], "report"):
        reporting.run(
            dict(job.input.items()),
            cfg=typed(EvaluateConfig, job, "evaluate"),
            seed=job.params.seed,
            params=job.config,
            out_json=Path(job.output.json),
            out_html=Path(job.output.html),
        )


def manifest(job: Job) -> None:
    """build/manifest.json: what went in (read back from the F16 GGUF) and every output's hash."""
    from labmake.evaluation import provenance

    with logs.stage(job.log[0], "manifest"):
        outputs = sorted(
            {*job.input.ggufs, job.input.f16, job.input.report, *job.input.data, *job.input.card}
        )
        provenance.write_manifest(
            Path(job.output[0]), Path(job.input.f16), [Path(p) for p in outputs]
        )
