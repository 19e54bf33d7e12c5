"""params.yaml -> validated, typed configuration objects.

params.yaml is checked with cerberus against ``schema/params.yaml`` before anything runs, then
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


@dataclass(frozen=True)
class SeedsConfig:
    chunk_words: int = 180
    chunk_overlap_words: int = 30


@dataclass(frozen=True)
class GenerateConfig:
    requests_per_leaf: int = 16
    examples_per_prompt: int = 3


@dataclass(frozen=True)
class FilterConfig:
    min_question_words: int = 3
    max_question_words: int = 60
    min_answer_words: int = 2
    max_answer_words: int = 120
    near_duplicate_rouge_l: float = 0.8
    min_chunk_overlap: float = 0.5
    max_samples_per_leaf: int = 40


@dataclass(frozen=True)
class MixConfig:
    eval_seeds_per_leaf: int = 2


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
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass(frozen=True)
class TrainConfig:
    max_seq_len: int = 256
    phases: tuple[PhaseConfig, ...] = ()


@dataclass(frozen=True)
class ExportConfig:
    quantizations: tuple[str, ...] = ("Q4_K_M", "Q8_0")


@dataclass(frozen=True)
class EvaluateConfig:
    max_new_tokens: int = 64
    n_threads: int = 2


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
    text = resources.files("labmake.schema").joinpath("params.yaml").read_text(encoding="utf-8")
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
