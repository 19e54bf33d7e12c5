"""rules/train.smk: the student in Hugging Face form, then one phase of tuning per job."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs, paths, tracking
from labmake.core.config import PhaseConfig, StudentConfig, TrainConfig
from labmake.stages import Job, typed


def base_model(job: Job) -> None:
    """build/base/: the student in Hugging Face form: a GGUF converted once (cached by hash),
    or a Hugging Face folder copied as it is; with student.chat_template's template if set."""
    from labmake.core.models import resolve_gguf
    from labmake.training import student, student_hf

    with logs.stage(job.log[0], "base_model", job.threads):
        cfg = typed(StudentConfig, job, "student")
        template = Path(cfg.chat_template) if cfg.chat_template else None
        if cfg.hf is not None:
            student_hf.build_base(Path(cfg.hf), Path(job.output[0]), template)
        else:
            student.convert_gguf_to_hf(
                resolve_gguf(cfg.gguf), Path(job.output[0]), chat_template=template
            )


def student_gguf(job: Job) -> None:
    """build/student/student.F16.gguf: a Hugging Face student's base folder as one GGUF, which
    plays the student GGUF's part (the base's answers, its retention continuations, chunking)."""
    from labmake.export.writer import write_gguf
    from labmake.training.student_hf import student_provenance

    with logs.stage(job.log[0], "student_gguf", job.threads):
        base = Path(job.input.base)
        write_gguf(base, Path(job.output[0]), provenance=student_provenance(base))


def train(job: Job) -> None:
    """build/checkpoints/{phase}/: the phase's adapter (or full weights), from the earlier
    phases, on its dataset with replay; in several processes when train.processes says so."""
    from labmake.training import launch
    from labmake.training.phase import run_phase

    with logs.stage(job.log[0], "train", job.threads):
        phase = typed(PhaseConfig, job, "phase", "train.phases")
        cfg = typed(TrainConfig, job, "train")
        kwargs = dict(
            max_seq_len=cfg.max_seq_len,
            seed=job.params.seed,
            base_dir=Path(job.input.base),
            parent_dirs=[Path(p) for p in job.input.parents],
            dataset=Path(job.input.dataset),
            replay=[Path(p) for p in job.input.replay],
            out_dir=Path(job.output[0]),
            packing=cfg.packing,
            over_length=cfg.over_length,
            resume_dir=Path(paths.RESUME_DIR.format(phase=job.wildcards.phase)),
            evaluation_items=Path(job.input.evaluation) if job.input.evaluation else None,
            retention_reference=Path(job.input.retention) if job.input.retention else None,
            # From the whole config, not a param of the rule: tracking re-runs nothing.
            tracking=tracking.kind_of(job.config),
        )
        processes = launch.resolve_processes(cfg.processes)
        if processes > 1 and not launch.in_launch():
            launch.launch(processes, phase, kwargs, log_file=job.log[0], threads=job.threads)
        else:
            run_phase(phase, **kwargs)
