"""Every artifact path of a build, in one place.

The templates carry Snakemake-style ``{leaf}``/``{phase}``/``{quant}`` fields so that rules use
them as patterns and Python code fills them with :func:`str.format`. A leaf is the
taxonomy-relative folder of a qna.yaml, e.g. ``knowledge/science/water_cycle``.
"""

from __future__ import annotations

import os

BUILD = "build"

SEEDS = "build/seeds/{leaf}.json"
GENERATED = "build/generated/{leaf}.jsonl"
# A knowledge leaf's chunk rewrites, kept and rejected (generate.knowledge.augment; else empty).
AUGMENTED = "build/generated/{leaf}.augmented.jsonl"
FILTERED = "build/filtered/{leaf}.jsonl"
FILTER_STATS = "build/filtered/{leaf}.stats.json"
DATASET = "build/data/{dataset}.jsonl"
DATASETS = ("knowledge", "skills", "eval")
MIX_STATS = "build/data/mix.json"
# Knowledge multiple choice written by the teacher per knowledge leaf, and all leaves' items
# together: evaluation data only, never an input of mix or train.
MC_LEAF = "build/mc/{leaf}.jsonl"
MULTIPLE_CHOICE = "build/data/multiple_choice.jsonl"
# General prompts, the base's own continuations and its top-k log-probabilities: what every
# model's drift from the base (retention) is measured against.
RETENTION_REFERENCE = "build/data/retention.jsonl"

BASE_DIR = "build/base"
BASE_DONE = "build/base/labmake_base.json"
# A Hugging Face student (student.hf) as one F16 GGUF: what a student GGUF is for the rest.
STUDENT_GGUF = "build/student/student.F16.gguf"
CHECKPOINT_DIR = "build/checkpoints/{phase}"
CHECKPOINT_DONE = "build/checkpoints/{phase}/labmake_phase.json"
# A phase's in-progress state (resumable checkpoints). Not a rule output: Snakemake deletes a
# failed job's outputs, and this must survive a killed job so its re-run resumes.
RESUME_DIR = "build/cache/train-resume/{phase}"  # not a DVC out: in-progress state only
MERGED_DIR = "build/model/hf"
# Files inside those folders that several stages read.
BASE_MARKER = "labmake_base.json"  # build/base: where the student came from
TOKENIZER_GGUF = "tokenizer.gguf"  # build/base, build/model/hf: the student's tokenizer as GGUF
MODEL_MARKER = "labmake_model.json"  # build/model/hf: the merged phases and their provenance
MERGED_DONE = "build/model/hf/labmake_model.json"
GGUF = "build/model/model.{quant}.gguf"
EVAL_REPORT = "build/eval/report.json"
# One model's scores on the held-out items (base, phase-{name}, tuned, gguf-{quant}).
EVAL_MODEL = "build/eval/{model}.json"
REPORT_HTML = "build/report.html"
# What ships beside the GGUFs: a model card and an Ollama Modelfile.
MODEL_CARD = "build/model/README.md"
MODELFILE = "build/model/Modelfile"
# lm-evaluation-harness results of one model (evaluate.lm_eval.tasks).
LM_EVAL = "build/eval/lm-eval/{model}.json"
# Training and evaluation metrics as TensorBoard event files; not an artifact (wall-clock
# values), never an input of anything.
TRACKING = "build/tracking"
BENCHMARKS = "build/benchmarks"
MANIFEST = "build/manifest.json"
# Teacher answers by request hash (labmake.teacher.cache): a crashed or edited build re-asks
# only what changed. Not an artifact: safe to delete, never versioned.
# Per rule script, the hash of the labmake code it runs and of the lock: rules take this one file
# as their code input instead of the fifty it sums up (labmake.core.code_inputs finds them).
CODE_STAMP = "build/code/{script}.sha256"
TEACHER_CACHE = "build/cache/teacher"
# `labmake try` builds in a folder of its own but shares the build's teacher answers: it names
# the build's cache (absolute) in this environment variable for the jobs it starts.
TEACHER_CACHE_ENV = "LABMAKE_TEACHER_CACHE"

LOG = "build/logs/{rule}/{name}.log"
# Snakemake's per-job wall time and memory (not artifacts: they differ run to run).
BENCHMARK = "build/benchmarks/{rule}/{name}.tsv"


def seeds(leaf: str) -> str:
    return SEEDS.format(leaf=leaf)


def generated(leaf: str) -> str:
    return GENERATED.format(leaf=leaf)


def augmented(leaf: str) -> str:
    return AUGMENTED.format(leaf=leaf)


def filtered(leaf: str) -> str:
    return FILTERED.format(leaf=leaf)


def filter_stats(leaf: str) -> str:
    return FILTER_STATS.format(leaf=leaf)


def mc_leaf(leaf: str) -> str:
    return MC_LEAF.format(leaf=leaf)


def dataset(name: str) -> str:
    return DATASET.format(dataset=name)


def checkpoint_done(phase: str) -> str:
    return CHECKPOINT_DONE.format(phase=phase)


def gguf(quant: str) -> str:
    return GGUF.format(quant=quant)


def eval_model(model: str) -> str:
    return EVAL_MODEL.format(model=model)


def code_stamp(script: str) -> str:
    return CODE_STAMP.format(script=script)


def log(rule: str, name: str = "all") -> str:
    return LOG.format(rule=rule, name=name)


def benchmark(rule: str, name: str = "all") -> str:
    return BENCHMARK.format(rule=rule, name=name)


def teacher_cache() -> str:
    """Where teacher answers are cached: ``$LABMAKE_TEACHER_CACHE`` when set, else the build's."""
    return os.environ.get(TEACHER_CACHE_ENV) or TEACHER_CACHE
