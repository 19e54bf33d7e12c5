"""params.yaml -> validated, typed configuration objects.

Every key is declared once, below, as a :func:`~labmake.core.schema.param` field: type, default,
range or allowed values, and help. The cerberus schema that checks params.yaml before anything
runs is generated from these declarations, and a checked mapping becomes these frozen
dataclasses. Each rule receives only its section (``config["teacher"]``, ...) and its stage
turns that back into the dataclass with :func:`section`, so a value has the same type whether it
came from the file or through Snakemake's params, and a default lives only here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from labmake.core.schema import (
    ConfigError,
    explain,
    from_mapping,
    param,
    schema_of,
    validator_class,
)

__all__ = ["ConfigError"]  # raised by load/validate/section; defined with the machinery

QUANTIZATIONS = ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_0", "Q4_K_M", "Q4_0")
_NAME = r"^[A-Za-z0-9_-]+\Z"  # \Z: "$" would let a trailing newline through


@dataclass(frozen=True)
class TaxonomyConfig:
    root: str = param("taxonomy", help="the taxonomy's root folder", empty=False)


@dataclass(frozen=True)
class StudentConfig:
    gguf: str | None = param(
        None, help="the student GGUF; null: the embedded Gemma 3 270M base", empty=False
    )


@dataclass(frozen=True)
class TeacherConfig:
    backend: str = param(
        "llama-cpp",
        help="llama-cpp (a GGUF run in-process) or openai (an OpenAI-compatible server)",
        regex=r"^[a-z][a-z0-9-]*$",
    )
    gguf: str | None = param(
        None, help="llama-cpp: the teacher GGUF; null: the embedded Gemma 3 270M", empty=False
    )
    n_ctx: int = param(2048, help="tokens one request may fill: prompt + max_tokens", min=256)
    n_threads: int = param(2, help="CPU threads of the llama-cpp teacher", min=1)
    n_parallel: int = param(8, help="sequences decoded together in one batch", min=1, max=64)
    temperature: float = param(0.7, help="sampling temperature", min=0.0)
    top_p: float = param(0.95, help="nucleus sampling", min=0.0, max=1.0)
    repeat_penalty: float = param(1.1, help="llama-cpp only (not in the OpenAI API)", min=0.0)
    max_tokens: int = param(160, help="per request; generation also stops at delimiters", min=8)
    base_url: str | None = param(
        None, help="openai: e.g. http://127.0.0.1:8000/v1", regex=r"^https?://.+"
    )
    model: str | None = param(None, help="openai: the server's model name", empty=False)
    api_key_env: str | None = param(
        None,
        help="openai: the NAME of the environment variable holding the key (never the key)",
        regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
    )
    chat: bool = param(False, help="openai: /chat/completions with the prompt as one user turn")
    timeout_s: float = param(120.0, help="openai: seconds per HTTP request", min=0.1)
    max_retries: int = param(
        5, help="openai: retries on 429/5xx/timeouts/dropped connections", min=0, max=20
    )
    concurrency: int = param(4, help="openai: requests in flight at once", min=1, max=256)

    def __post_init__(self) -> None:
        if self.max_tokens >= self.n_ctx:
            raise ConfigError(
                f"params.yaml: teacher.max_tokens ({self.max_tokens}) must be below "
                f"teacher.n_ctx ({self.n_ctx}): a request's prompt and answer share the context"
            )


@dataclass(frozen=True)
class SeedsConfig:
    chunk_tokens: int = param(200, help="knowledge documents: tokens per chunk", min=16)
    chunk_overlap_tokens: int = param(32, help="tokens a chunk shares with the previous one", min=0)

    def __post_init__(self) -> None:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ConfigError(
                "params.yaml: seeds.chunk_overlap_tokens must be below seeds.chunk_tokens"
            )


@dataclass(frozen=True)
class KnowledgeCounts:
    samples_per_chunk: int = param(
        4, help="generation requests per document chunk (one Q/A each)", min=1
    )


@dataclass(frozen=True)
class FreeformCounts:
    questions: int = param(32, help="question-generation requests per leaf", min=1)


@dataclass(frozen=True)
class GroundedCounts:
    contexts: int = param(10, help="context-generation requests per leaf", min=1)
    questions_per_context: int = param(2, help="question requests per kept context", min=1)


@dataclass(frozen=True)
class GenerateConfig:
    pipeline: str = param(
        "auto",
        help="auto: by leaf kind (knowledge | freeform | grounded); or a pipeline's name",
        regex=r"^[a-z][a-z0-9_]*$",
    )
    pipelines_dir: str | None = param(
        None, help="a folder whose <name>.yaml and prompts/*.j2 shadow the shipped ones"
    )
    requests_per_leaf: int = param(16, help="the simple pipeline's requests per leaf", min=1)
    examples_per_prompt: int = param(3, help="seed examples shown per prompt", min=1, max=20)
    knowledge: KnowledgeCounts = param(help="knowledge pipeline counts", factory=KnowledgeCounts)
    freeform: FreeformCounts = param(help="freeform pipeline counts", factory=FreeformCounts)
    grounded: GroundedCounts = param(help="grounded pipeline counts", factory=GroundedCounts)


@dataclass(frozen=True)
class NearDuplicateConfig:
    method: str = param("rouge_l", help="rouge_l | minhash", allowed=["rouge_l", "minhash"])
    threshold: float = param(
        0.8, help="ROUGE-L F1, or estimated Jaccard of word 3-grams", min=0.0, max=1.0
    )


@dataclass(frozen=True)
class FilterConfig:
    min_question_words: int = param(3, help="shorter questions are dropped", min=1)
    max_question_words: int = param(60, help="longer questions are dropped", min=1)
    min_answer_words: int = param(2, help="shorter answers are dropped", min=1)
    max_answer_words: int = param(120, help="longer answers are dropped", min=1)
    near_duplicate: NearDuplicateConfig = param(
        help="a sample this close to a kept one or a seed is dropped", factory=NearDuplicateConfig
    )
    min_chunk_overlap: float = param(
        0.5, help="knowledge: share of the answer's content words in its chunk", min=0.0, max=1.0
    )
    max_samples_per_leaf: int = param(40, help="accepted samples kept per leaf", min=1)
    blocklist: tuple[str, ...] = param(
        (
            r"(?i)\bas an ai\b",
            r"(?i)\b(large )?language model\b",
            r"(?i)\bI (cannot|can't) (help|assist)\b",
            r"(?i)\bI'm sorry, but\b",
            r"(?i)https?://",
        ),
        help="regular expressions; a sample matching any is dropped",
    )

    def __post_init__(self) -> None:
        for what in ("question", "answer"):
            low, high = getattr(self, f"min_{what}_words"), getattr(self, f"max_{what}_words")
            if low > high:
                raise ConfigError(
                    f"params.yaml: filter.min_{what}_words ({low}) is above "
                    f"filter.max_{what}_words ({high}): no {what} could pass"
                )


@dataclass(frozen=True)
class MixRecipe:
    leaves: str = param(help='a glob over leaf names, e.g. "knowledge/**" or one leaf')
    size: int | None = param(None, help="samples drawn per matching leaf; null: all", min=0)
    upsample: bool = param(False, help="draw with replacement up to size when short")


@dataclass(frozen=True)
class MixConfig:
    eval_seeds_per_leaf: int = param(2, help="seed Q&A held out for evaluation", min=0)
    # Two seeds alone give per-leaf intervals too wide to read.
    eval_generated_per_leaf: int = param(
        4, help="accepted samples per leaf held out of training into eval.jsonl", min=0
    )
    # A small leaf needs its few samples for training more than for a tighter interval.
    eval_generated_max_share: float = param(
        0.25, help="...at most this share of a leaf's accepted samples", min=0.0, max=0.5
    )
    knowledge_forms: tuple[str, ...] = param(
        ("closed_book", "document"),
        help="closed_book (question only), document (LAB phase 1: chunk + question), "
        "distractors (LAB phase 2: the right chunk among others)",
        minlength=1,
        item={"allowed": ["closed_book", "document", "distractors"]},
    )
    distractors: int = param(3, help="other chunks shown with the right one", min=0)
    recipes: tuple[MixRecipe, ...] = param(
        (), help="samples per leaf by glob, first match wins; none: all"
    )


@dataclass(frozen=True)
class LoraConfig:
    r: int = param(8, help="LoRA rank", min=1)
    alpha: int = param(16, help="LoRA alpha", min=1)
    dropout: float = param(0.0, help="LoRA dropout", min=0.0, max=1.0)
    target_modules: tuple[str, ...] = param(
        ("q_proj", "k_proj", "v_proj", "o_proj"), help="modules given adapters", minlength=1
    )


@dataclass(frozen=True)
class PhaseConfig:
    name: str = param(help="the phase's name (its checkpoint folder)", regex=_NAME)
    dataset: str = param(help="knowledge | skills", allowed=["knowledge", "skills"])
    epochs: int = param(1, help="passes over the data (unless max_steps)", min=1)
    max_steps: int | None = param(None, help="optimizer steps; null: from epochs", min=1)
    learning_rate: float = param(2e-4, help="peak learning rate", min=0.0)
    warmup_steps: int = param(0, help="linear warm-up steps", min=0)
    batch_size: int = param(4, help="samples per micro-batch", min=1)
    grad_accum: int = param(1, help="micro-batches per optimizer step", min=1)
    replay_ratio: float = param(
        0.0, help="share of the phase's samples replayed from earlier phases", min=0.0, max=1.0
    )
    method: str = param(
        "lora", help="lora: train an adapter; full: every weight", allowed=["lora", "full"]
    )
    loss_on: str = param(
        "assistant",
        help="assistant: the answers only; all: every token",
        allowed=["assistant", "all"],
    )
    checkpoint_every: int | None = param(
        None, help="steps between resumable checkpoints (and held-out losses)", min=1
    )
    heldout_fraction: float = param(
        0.0, help="share of the phase's records held out to pick the best step", min=0.0, max=0.5
    )
    # evaluation: the evaluation stage's reference NLL on build/data/eval.jsonl, the report's
    # headline (then optimistic, since the choice has seen those items).
    select_by: str = param(
        "heldout_loss",
        help="what picks the kept checkpoint: heldout_loss or evaluation",
        allowed=["heldout_loss", "evaluation"],
    )
    lora: LoraConfig = param(help="the adapter (method: lora)", factory=LoraConfig)


@dataclass(frozen=True)
class TrainConfig:
    max_seq_len: int = param(256, help="tokens per sample", min=16)
    packing: bool = param(
        True, help="each micro-batch as one unpadded row, attention kept per sample"
    )
    over_length: str = param(
        "drop", help="samples over max_seq_len: drop or truncate", allowed=["drop", "truncate"]
    )
    # Each optimizer step is split between the processes (gloo on CPUs, NCCL on GPUs).
    processes: str | int = param(
        "auto",
        help="data-parallel processes: auto = one per visible CUDA GPU (1 on a CPU), or a count",
        allowed=["auto"],
        min=1,
    )
    phases: tuple[PhaseConfig, ...] = param(
        (), help="the training phases, in order, each from the last", minlength=1
    )

    def __post_init__(self) -> None:
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"params.yaml: train.phases has repeated names {names}; give each phase its "
                "own name"
            )


@dataclass(frozen=True)
class ExportConfig:
    quantizations: tuple[str, ...] = param(
        ("Q4_K_M", "Q5_K_M", "Q8_0"),
        help="GGUF types written besides F16",
        minlength=1,
        item={"allowed": list(QUANTIZATIONS)},
    )

    def __post_init__(self) -> None:
        if len(set(self.quantizations)) != len(self.quantizations):
            raise ConfigError(
                f"params.yaml: export.quantizations lists a type twice {list(self.quantizations)}"
            )


@dataclass(frozen=True)
class MultipleChoiceConfig:
    questions_per_chunk: int = param(2, help="teacher requests per knowledge chunk", min=1)
    options: int = param(4, help="the right answer + wrong options", min=2, max=10)


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int = param(64, help="tokens of each greedy answer", min=1)
    n_threads: int = param(2, help="llama.cpp threads", min=1)
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


@dataclass(frozen=True)
class BuildConfig:
    seed: int = param(help="the one seed every stage derives its randomness from", min=0)
    train: TrainConfig = param(help="tuning: the stage's keys and its phases")
    taxonomy: TaxonomyConfig = param(help="where the taxonomy is", factory=TaxonomyConfig)
    student: StudentConfig = param(help="the model that is tuned", factory=StudentConfig)
    teacher: TeacherConfig = param(help="the model that writes data", factory=TeacherConfig)
    seeds: SeedsConfig = param(help="seed examples and document chunks", factory=SeedsConfig)
    generate: GenerateConfig = param(help="synthetic data generation", factory=GenerateConfig)
    filter: FilterConfig = param(help="rule-based filters", factory=FilterConfig)
    mix: MixConfig = param(help="the training sets and held-out items", factory=MixConfig)
    export: ExportConfig = param(help="GGUF files", factory=ExportConfig)
    evaluate: EvaluateConfig = param(help="scoring and the report", factory=EvaluateConfig)

    def __post_init__(self) -> None:
        if not self.train.phases:
            raise ConfigError("params.yaml: train.phases: at least one phase is required")


T = TypeVar("T")


def validate(raw: dict[str, Any], source: str = "params.yaml") -> BuildConfig:
    """Check a params mapping against the schema and return the typed config."""
    validator = validator_class()(schema_of(BuildConfig))
    if not validator.validate(raw):
        problems = "; ".join(explain(validator.errors, BuildConfig))
        raise ConfigError(
            f"{source}: {problems}. Fix these keys (see the comments in params.yaml)."
        )
    try:
        return from_mapping(BuildConfig, validator.document)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("params.yaml:", f"{source}:", 1)) from None


def load(path: str | Path = "params.yaml") -> BuildConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; run from the repository root or pass --params"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (seed, teacher, train, ...)")
    return validate(raw, str(path))


def section(cls: type[T], data: dict[str, Any], name: str) -> T:
    """The typed form of one section that a rule received through Snakemake's params."""
    return from_mapping(cls, data, name)
