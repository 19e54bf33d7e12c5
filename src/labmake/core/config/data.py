"""Seeds, generation, filters and the mix: the keys of the data stages."""

from __future__ import annotations

from dataclasses import dataclass

from labmake.core.params_checks import check_generate
from labmake.core.schema import ConfigError, param


@dataclass(frozen=True)
class SeedsConfig:
    chunk_tokens: int = param(200, help="knowledge documents: tokens per chunk", min=16)
    chunk_overlap_tokens: int = param(32, help="tokens a chunk shares with the previous one", min=0)
    converter: str = param(
        "builtin",
        help="PDF, Word and HTML documents: builtin (pypdfium2, mammoth, markdownify) or docling",
        allowed=["builtin", "docling"],
    )
    docling_models: str | None = param(
        None, help="with converter docling: the folder of its models (PDF needs them)"
    )

    def __post_init__(self) -> None:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ConfigError(
                "params.yaml: seeds.chunk_overlap_tokens must be below seeds.chunk_tokens"
            )


@dataclass(frozen=True)
class YieldFloor:
    """After a pipeline's first round (its counts), seeded rounds until the leaf has min_kept
    accepted samples, while a round's worst case still fits in max_requests."""

    min_kept: int = param(10, help="more rounds until this many are accepted (0: one round)", min=0)
    max_requests: int = param(240, help="teacher requests extra rounds may bring a leaf to", min=1)


# What a knowledge chunk may be rewritten as before Q/A generation (labmake.sdg.augment).
AUGMENT_KINDS = ("summary", "key_facts", "rephrase")


@dataclass(frozen=True)
class AugmentConfig:
    """Document augmentation (LAB, sdg_hub): the teacher rewrites each knowledge chunk; the
    rewrites its judges keep become extra chunks that Q/A generation reads like the document's."""

    kinds: tuple[str, ...] = param(
        (),
        help="rewrites of each chunk: summary, key_facts, rephrase; [] turns augmentation off",
        item={"allowed": list(AUGMENT_KINDS)},
    )
    per_chunk: int = param(1, help="rewrite requests per chunk and kind", min=1, max=8)

    def __post_init__(self) -> None:
        if len(set(self.kinds)) != len(self.kinds):
            raise ConfigError(
                f"params.yaml: generate.knowledge.augment.kinds lists a kind twice "
                f"({list(self.kinds)}); use per_chunk for more rewrites of one kind"
            )


@dataclass(frozen=True)
class KnowledgeCounts(YieldFloor):
    samples_per_chunk: int = param(
        4, help="generation requests per document chunk (one Q/A each)", min=1
    )
    augment: AugmentConfig = param(
        help="rewrites of each chunk (summary, key facts, rephrased) as extra chunks",
        factory=AugmentConfig,
    )


@dataclass(frozen=True)
class FreeformCounts(YieldFloor):
    questions: int = param(
        12, help="question-generation requests per leaf (each writes pairs_per_request)", min=1
    )
    pairs_per_request: int = param(
        3,
        help="question/answer pairs one request has the teacher write, one after another",
        min=1,
        max=8,
    )


@dataclass(frozen=True)
class GroundedCounts(YieldFloor):
    contexts: int = param(
        12,
        help="generation requests per leaf (each writes contexts_per_request new contexts, "
        "each with a question and its answer)",
        min=1,
    )
    contexts_per_request: int = param(
        3,
        help="context/question/answer triples one request has the teacher write",
        min=1,
        max=8,
    )


@dataclass(frozen=True)
class SafetyConfig:
    policy: str | None = param(
        None,
        help="a safety policy YAML replacing (or, with extends: labmake, changing) the shipped one",
        empty=False,
    )
    judge: bool = param(
        True, help="safety_judge blocks ask the teacher; false: the deterministic layer alone"
    )
    no_verdict: str = param(
        "keep",
        help="a safety judge reply that is no verdict: keep the sample or reject it",
        allowed=["keep", "reject"],
    )


@dataclass(frozen=True)
class JudgeCheckConfig:
    """A judge with ``check`` in its pipeline is first asked about the leaf's own seeds, each as
    written and each with another seed's answer (labmake.sdg.judge_check); it judges the
    leaf's samples only if it ranks the seeds as written above the swapped ones often enough."""

    min_auc: float = param(
        0.75,
        help="share of (seed as written, seed with another's answer) pairs the judge must rank "
        "right (ties count half; 0.5 is chance) to judge the leaf; 0: no check, always judge",
        min=0.0,
        max=1.0,
    )


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
    simple: YieldFloor = param(help="the simple pipeline's yield floor", factory=YieldFloor)
    safety: SafetyConfig = param(
        help="the safety layers every shipped pipeline runs", factory=SafetyConfig
    )
    judge_check: JudgeCheckConfig = param(
        help="a judge is used on a leaf only if it tells the leaf's seeds from swapped ones",
        factory=JudgeCheckConfig,
    )

    def __post_init__(self) -> None:
        check_generate(self)


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
    flag_below: int = param(5, help="fewer accepted samples: the leaf is flagged", min=0)
    on_empty: str = param(
        "warn",
        help="a leaf the filters leave empty: warn (flag it, build on) or fail (stop the build)",
        allowed=["warn", "fail"],
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
    # A knowledge leaf has 15 seed Q&A: a third of them gives intervals that can be read.
    eval_seeds_share: float = param(
        0.34,
        help="...or this share of a leaf's seed Q&A when that is more",
        min=0.0,
        max=0.5,
    )
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
