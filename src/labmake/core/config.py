"""params.yaml -> validated, typed configuration objects.

params.yaml is checked with cerberus against ``core/params_schema.yaml`` before anything runs, then
turned into frozen dataclasses. Each rule receives only its section (``config["teacher"]``,
...), and the script turns that section back into its dataclass with :func:`section`, so the
types are the same whether a value came from the file or from Snakemake's params.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or does not match the schema."""


@dataclass(frozen=True)
class TaxonomyConfig:
    root: str = "taxonomy"


@dataclass(frozen=True)
class StudentConfig:
    gguf: str | None = None  # None: the embedded Gemma 3 270M base


@dataclass(frozen=True)
class TeacherConfig:
    backend: str = "llama-cpp"
    gguf: str | None = None  # None: the embedded Gemma 3 270M base
    n_ctx: int = 2048
    n_threads: int = 2
    n_parallel: int = 8
    temperature: float = 0.7
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    max_tokens: int = 160
    # backend openai: any OpenAI-compatible server (vLLM, llama.cpp server, a hosted API).
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # the server's model name
    api_key_env: str | None = (
        None  # NAME of the environment variable holding the key (never the key)
    )
    chat: bool = False  # True: /chat/completions with the prompt as one user turn
    timeout_s: float = 120.0  # per HTTP request
    max_retries: int = 5  # on 429/5xx/timeouts/dropped connections/malformed bodies
    concurrency: int = 4  # requests in flight at once


@dataclass(frozen=True)
class SeedsConfig:
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 32


@dataclass(frozen=True)
class KnowledgeCounts:
    samples_per_chunk: int = 4  # generation requests per document chunk (one Q/A each)


@dataclass(frozen=True)
class FreeformCounts:
    questions: int = 32  # question-generation requests per leaf (one question each)


@dataclass(frozen=True)
class GroundedCounts:
    contexts: int = 10  # context-generation requests per leaf
    questions_per_context: int = 2  # question requests per kept context


@dataclass(frozen=True)
class GenerateConfig:
    pipeline: str = "auto"  # auto: by leaf kind (knowledge | freeform | grounded); or a name
    pipelines_dir: str | None = None  # a folder whose <name>.yaml / prompts/*.j2 shadow the shipped
    requests_per_leaf: int = 16  # the `simple` pipeline's requests per leaf
    examples_per_prompt: int = 3
    knowledge: KnowledgeCounts = field(default_factory=KnowledgeCounts)
    freeform: FreeformCounts = field(default_factory=FreeformCounts)
    grounded: GroundedCounts = field(default_factory=GroundedCounts)


@dataclass(frozen=True)
class NearDuplicateConfig:
    method: str = "rouge_l"  # rouge_l | minhash
    threshold: float = 0.8  # ROUGE-L F1, or estimated Jaccard of word 3-grams for minhash


@dataclass(frozen=True)
class FilterConfig:
    min_question_words: int = 3
    max_question_words: int = 60
    min_answer_words: int = 2
    max_answer_words: int = 120
    near_duplicate: NearDuplicateConfig = field(default_factory=NearDuplicateConfig)
    min_chunk_overlap: float = 0.5
    max_samples_per_leaf: int = 40
    blocklist: tuple[str, ...] = (
        r"(?i)\bas an ai\b",
        r"(?i)\b(large )?language model\b",
        r"(?i)\bI (cannot|can't) (help|assist)\b",
        r"(?i)\bI'm sorry, but\b",
        r"(?i)https?://",
    )


@dataclass(frozen=True)
class MixRecipe:
    leaves: str  # a glob over leaf names, e.g. "knowledge/**" or one leaf
    size: int | None = None  # generated samples drawn per matching leaf; None: all
    upsample: bool = False  # draw with replacement up to `size` when a leaf has fewer


@dataclass(frozen=True)
class MixConfig:
    eval_seeds_per_leaf: int = 2
    # Accepted samples per leaf held out of training into eval.jsonl (before the recipe draw):
    # two seeds alone give per-leaf intervals too wide to read.
    eval_generated_per_leaf: int = 4
    # ...but never more than this share of a leaf's accepted samples: a small leaf needs its
    # few samples for training more than for a tighter interval.
    eval_generated_max_share: float = 0.25
    # Knowledge samples appear in knowledge.jsonl in each listed form: closed_book (question
    # only), document (phase-1: its chunk + question), distractors (phase-2: the right chunk
    # among other chunks of the leaf).
    knowledge_forms: tuple[str, ...] = ("closed_book", "document")
    distractors: int = 3
    recipes: tuple[MixRecipe, ...] = ()


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass(frozen=True)
class PhaseConfig:
    name: str
    dataset: str
    epochs: int = 1
    max_steps: int | None = None
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    batch_size: int = 4
    grad_accum: int = 1
    replay_ratio: float = 0.0
    method: str = "lora"  # lora: train an adapter; full: train every weight
    loss_on: str = "assistant"  # assistant: the answers only; all: every token of the sample
    checkpoint_every: int | None = None  # steps between resumable checkpoints (+ held-out loss)
    heldout_fraction: float = 0.0  # share of the phase's records held out to pick the best step
    # What picks the kept checkpoint: heldout_loss (the phase's held-out records) or evaluation
    # (the evaluation stage's reference NLL on build/data/eval.jsonl, the report's headline).
    select_by: str = "heldout_loss"
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class TrainConfig:
    max_seq_len: int = 256
    packing: bool = True  # each micro-batch as one row, no padding, attention kept per sample
    over_length: str = "drop"  # samples longer than max_seq_len: drop or truncate (both counted)
    # Data-parallel training processes: "auto" = one per visible CUDA GPU (1 on a CPU); a number
    # forces it (several CPU processes use gloo). Each optimizer step is split between them.
    processes: str | int = "auto"
    phases: tuple[PhaseConfig, ...] = ()


@dataclass(frozen=True)
class ExportConfig:
    quantizations: tuple[str, ...] = ("Q4_K_M", "Q5_K_M", "Q8_0")


@dataclass(frozen=True)
class MultipleChoiceConfig:
    questions_per_chunk: int = 2  # teacher requests per knowledge chunk (one question each)
    options: int = 4  # the right answer + wrong options (teacher's, then the leaf's answers)


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int = 64
    n_threads: int = 2
    bootstrap_resamples: int = 1000  # paired bootstrap over held-out items, seeded from `seed`
    confidence: float = 0.95  # of the bootstrap intervals
    fail_on_regression: bool = False  # tuned worse than base beyond the interval fails the build
    # Knowledge multiple choice generated by the teacher from the leaf's documents.
    multiple_choice: MultipleChoiceConfig = field(default_factory=MultipleChoiceConfig)
    judge: TeacherConfig | None = None  # a teacher that grades answers 1-10; None: no judge


@dataclass(frozen=True)
class BuildConfig:
    seed: int
    taxonomy: TaxonomyConfig
    student: StudentConfig
    teacher: TeacherConfig
    seeds: SeedsConfig
    generate: GenerateConfig
    filter: FilterConfig
    mix: MixConfig
    train: TrainConfig
    export: ExportConfig
    evaluate: EvaluateConfig


T = TypeVar("T")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Turn a YAML value into ``tp``; tolerant of ``dvc exp`` writing 5e-05 as a string."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where)
    if origin is tuple:
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is float:
        return float(value)
    if tp is int and isinstance(value, str):
        return int(value)
    return value


def build(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively, with types from its annotations."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data.pop(f.name), f"{where}.{f.name}")
    if data:
        raise ConfigError(f"params.yaml: unknown key(s) {sorted(data)} in '{where or '/'}'")
    return cls(**kwargs)


@cache
def _schema() -> dict[str, Any]:
    text = (
        resources.files("labmake.core").joinpath("params_schema.yaml").read_text(encoding="utf-8")
    )
    return yaml.safe_load(text)


@cache
def _validator_class() -> type:
    from cerberus import Validator

    class ParamsValidator(Validator):  # type: ignore[misc]
        def _normalize_coerce_float(self, value: Any) -> Any:
            # `dvc exp` rewrites 5.0e-5 as 5e-05, which YAML reads as a string.
            try:
                return float(value)
            except (TypeError, ValueError):
                return value

    return ParamsValidator


def validate(raw: dict[str, Any], source: str = "params.yaml") -> BuildConfig:
    """Check a params mapping against the schema and return the typed config."""
    validator = _validator_class()(_schema())
    if not validator.validate(raw):
        problems = "; ".join(_flatten_errors(validator.errors))
        raise ConfigError(
            f"{source}: {problems}. Fix these keys (see the comments in params.yaml)."
        )
    config = build(BuildConfig, validator.document)
    names = [p.name for p in config.train.phases]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{source}: train.phases has repeated names {names}; give each phase its own name"
        )
    return config


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
    return build(cls, data, name)


def _flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(errors, dict):
        for key, value in sorted(errors.items(), key=lambda kv: str(kv[0])):
            where = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten_errors(value, where))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, (dict, list)):
                out.extend(_flatten_errors(item, prefix))
            else:
                out.append(f"{prefix}: {item}")
    else:
        out.append(f"{prefix}: {errors}")
    return out
