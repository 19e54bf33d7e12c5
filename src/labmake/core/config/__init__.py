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

from labmake.core.config.data import (
    AugmentConfig,
    FilterConfig,
    FreeformCounts,
    GenerateConfig,
    GroundedCounts,
    JudgeCheckConfig,
    KnowledgeCounts,
    MixConfig,
    MixRecipe,
    NearDuplicateConfig,
    SafetyConfig,
    SeedsConfig,
    YieldFloor,
)
from labmake.core.config.evaluation import (
    EvaluateConfig,
    LmEvalConfig,
    MultipleChoiceConfig,
    RetentionConfig,
    TryConfig,
)
from labmake.core.config.sources import (
    NAME_PATTERN,
    PUBLIC_HTTPS,
    QUANTIZATIONS,
    StudentConfig,
    TaxonomyConfig,
    TeacherConfig,
)
from labmake.core.config.tuning import (
    ExportConfig,
    LoraConfig,
    PhaseConfig,
    TrainConfig,
)
from labmake.core.params_checks import read_params_text
from labmake.core.schema import (
    ConfigError,
    explain,
    from_mapping,
    param,
    schema_of,
    validator_class,
)

__all__ = [
    "AugmentConfig",
    "BuildConfig",
    "ConfigError",
    "EvaluateConfig",
    "ExportConfig",
    "FilterConfig",
    "FreeformCounts",
    "GenerateConfig",
    "GroundedCounts",
    "JudgeCheckConfig",
    "KnowledgeCounts",
    "LmEvalConfig",
    "LoraConfig",
    "MixConfig",
    "MixRecipe",
    "MultipleChoiceConfig",
    "NAME_PATTERN",
    "NearDuplicateConfig",
    "PUBLIC_HTTPS",
    "PhaseConfig",
    "QUANTIZATIONS",
    "RetentionConfig",
    "SafetyConfig",
    "SeedsConfig",
    "StudentConfig",
    "TaxonomyConfig",
    "TeacherConfig",
    "TrainConfig",
    "TryConfig",
    "YieldFloor",
    "load",
    "section",
    "validate",
]


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
    # Read by the jobs from the whole config, never a rule's param: tracking re-runs nothing.
    tracking: str = param(
        "tensorboard",
        help="training and evaluation metrics as TensorBoard event files in build/tracking, or none",
        allowed=["tensorboard", "none"],
    )
    try_: TryConfig = param(help="labmake try's budget", factory=TryConfig, key="try")

    def __post_init__(self) -> None:
        if not self.train.phases:
            raise ConfigError("params.yaml: train.phases: at least one phase is required")
        cap = self.filter.max_samples_per_leaf
        for name in ("knowledge", "freeform", "grounded", "simple"):
            if getattr(self.generate, name).min_kept > cap:
                raise ConfigError(
                    f"params.yaml: generate.{name}.min_kept is above filter.max_samples_per_leaf "
                    f"({cap}): the filters would never keep that many, so every round would run"
                )


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
        raw = yaml.safe_load(read_params_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of sections (seed, teacher, train, ...)")
    return validate(raw, str(path))


def section(cls: type[T], data: dict[str, Any], name: str) -> T:
    """The typed form of one section that a rule received through Snakemake's params."""
    return from_mapping(cls, data, name)
