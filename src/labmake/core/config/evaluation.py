"""Scoring, the report, retention and labmake try's budget."""

from __future__ import annotations

from dataclasses import dataclass

from labmake.core.config.sources import TeacherConfig
from labmake.core.schema import param


@dataclass(frozen=True)
class MultipleChoiceConfig:
    questions_per_chunk: int = param(2, help="teacher requests per knowledge chunk", min=1)
    options: int = param(4, help="the right answer + wrong options", min=2, max=10)


@dataclass(frozen=True)
class RetentionConfig:
    prompts: int = param(48, help="general prompts drawn (seeded) from labmake's set", min=1)
    tokens: int = param(32, help="tokens the base samples after each prompt", min=1, max=256)
    top_k: int = param(64, help="base log-probs kept per position for the KL", min=1, max=1024)
    qa: tuple[str, ...] = param(
        (), help="JSON-lines files of general Q&A ({question, answer} or messages) scored too"
    )


@dataclass(frozen=True)
class LmEvalConfig:
    tasks: tuple[str, ...] = param(
        (),
        help="lm-evaluation-harness tasks run on the base and the tuned model (labmake[lm-eval])",
    )
    include_path: str | None = param(None, help="a folder of your own task YAML files")
    limit: int | None = param(None, help="at most this many examples per task", min=1)
    num_fewshot: int | None = param(None, help="few-shot examples; null: each task's own", min=0)
    batch_size: int = param(1, help="examples per forward pass", min=1)


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int = param(64, help="tokens of each greedy answer", min=1)
    n_threads: int = param(2, help="llama.cpp threads", min=1)
    n_gpu_layers: int = param(
        0,
        help="layers llama.cpp puts on the GPU for the GGUFs' answers (0: CPU only, -1: all); "
        "the retention reference and scoring stay on the CPU (the same bytes everywhere)",
        min=-1,
    )
    bootstrap_resamples: int = param(1000, help="paired bootstrap resamples", min=10)
    confidence: float = param(0.95, help="of the bootstrap intervals", min=0.5, max=0.999)
    fail_on_regression: bool = param(
        False, help="tuned worse than base on a leaf, beyond the interval, fails the build"
    )
    multiple_choice: MultipleChoiceConfig = param(
        help="knowledge multiple choice written by the teacher", factory=MultipleChoiceConfig
    )
    judge: TeacherConfig | None = param(
        None, help="a teacher that grades answers 1-10 (teacher's keys); null: no judge"
    )
    retention: RetentionConfig = param(
        help="drift from the base on general text no leaf taught", factory=RetentionConfig
    )
    max_retention_loss: float | None = param(
        None,
        help="the tuned model's KL to the base (nats/token) above this fails the build",
        min=0.0,
    )
    lm_eval: LmEvalConfig = param(
        help="standard benchmarks from data on this machine (optional)", factory=LmEvalConfig
    )
    # labmake try scores no GGUF (it makes none): its models answer here instead.
    hf_answers: bool = param(
        False, help="Hugging Face models (base, phases, tuned) also write greedy answers"
    )


@dataclass(frozen=True)
class TryConfig:
    """``labmake try``: a build of a few leaves in a folder of its own; each count below
    replaces the build's own there (chosen by measurement, see params.yaml)."""

    folder: str = param("build/try", help="where a try builds (never the build's own files)")
    samples_per_chunk: int = param(2, help="generate.knowledge.samples_per_chunk", min=1)
    questions: int = param(4, help="generate.freeform.questions", min=1)
    contexts: int = param(3, help="generate.grounded.contexts", min=1)
    requests_per_leaf: int = param(4, help="generate.requests_per_leaf (simple)", min=1)
    min_kept: int = param(4, help="every pipeline's generate.*.min_kept", min=0)
    max_requests: int = param(48, help="every pipeline's generate.*.max_requests", min=1)
    max_steps: int = param(16, help="each phase's max_steps", min=1)
    eval_generated_per_leaf: int = param(0, help="mix.eval_generated_per_leaf", min=0)
    multiple_choice: int = param(1, help="evaluate.multiple_choice.questions_per_chunk", min=1)
    retention_prompts: int = param(4, help="evaluate.retention.prompts", min=1)
