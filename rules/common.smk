# Leaf discovery, the validated config, and one-line input functions into labmake.core.paths.
import re
from snakemake.exceptions import WorkflowError
from pathlib import Path

from labmake.core import code_inputs, paths
from labmake.core.config import ConfigError, validate
from labmake.core.models import StudentError, student_gguf
from labmake.evaluation import models as _models
from labmake.taxonomy.scan import find_leaves
from labmake.training.student_hf import student_inputs

try:
    CONFIG = validate(config, "params.yaml")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# The student's files (a Hugging Face folder, a chat template), checked now: a folder labmake
# cannot tune is said before any job runs. STUDENT_GGUF plays the student GGUF's part (None:
# the embedded default, resolved at run time).
try:
    STUDENT_FILES = student_inputs(CONFIG.student)
except StudentError as exc:
    raise WorkflowError(str(exc)) from None
STUDENT_GGUF = student_gguf(CONFIG.student)

TAXONOMY = Path(CONFIG.taxonomy.root)
LEAVES = find_leaves(TAXONOMY)
if not LEAVES:
    raise WorkflowError(f"{TAXONOMY}: no qna.yaml found; set taxonomy.root in params.yaml")
PHASES = [phase.name for phase in CONFIG.train.phases]
PHASE_DATASET = {phase.name: phase.dataset for phase in CONFIG.train.phases}
QUANTS = list(CONFIG.export.quantizations)
# labmake's code is an input of the rules that run it (Snakemake's code trigger sees only the
# script files, not the package they call), derived from each script's imports. The locked
# toolchain is an input of every rule too: another torch or llama.cpp may give other bytes.
SCRIPTS = Path(workflow.basedir) / "scripts"
TOOLCHAIN = [name for name in ("requirements.lock", "requirements-torch.txt") if Path(name).is_file()]


def llama_gpu(teacher):
    """1 when `teacher` runs llama.cpp inside the job with layers on a GPU (its `gpu` resource)."""
    return int(teacher is not None and teacher.backend == "llama-cpp" and teacher.n_gpu_layers != 0)


# The `gpu` resource of the jobs that run llama.cpp; profiles/slurm turns 1 into --gpus=1, 0 into
# nothing. A served teacher (backend openai + teacher.serve) runs no llama.cpp in the job itself:
# a site gives its jobs a GPU with set-resources.
TEACHER_GPU = llama_gpu(CONFIG.teacher)
# evaluate: the GGUFs' answers (evaluate.n_gpu_layers) and a llama-cpp judge; retention stays on
# the CPU, and the Hugging Face models (tuned, phases) are scored by torch on the CPU.
EVALUATE_GPU = int(CONFIG.evaluate.n_gpu_layers != 0) or llama_gpu(CONFIG.evaluate.judge)


def evaluate_gpu(wildcards):
    """evaluate's `gpu` for one model: only the models that answer from a GGUF ask for one."""
    gguf = wildcards.model == _models.BASE or wildcards.model.startswith(_models.GGUF_PREFIX)
    return EVALUATE_GPU if gguf else 0


# No constraint on {leaf}: any taxonomy path (`labmake validate` refuses names Snakemake cannot
# carry). An alternation of every leaf, as before, is matched against each file Snakemake looks
# at, and grew with the square of the taxonomy's size.
wildcard_constraints:
    phase="|".join(re.escape(p) for p in PHASES),
    quant="|".join(re.escape(q) for q in QUANTS if q != "F16") or "NONE",


def code(script):
    """The code input of the rule whose script is `script`: one stamp (rules/code.smk) that
    changes exactly when labmake's modules and data files the script reaches, or the lock, do."""
    return paths.code_stamp(script)


def code_files(wildcards):
    """What the script `wildcards.script` runs: its import closure, those modules' data, the lock."""
    return [*code_inputs.for_script(SCRIPTS / f"{wildcards.script}.py"), *TOOLCHAIN]


def section(name, without=(), only=None):
    """params.yaml's section `name` as the user wrote it (less the keys in `without`; only those
    in `only` when given): what a rule passes to its stage, which fills in the defaults
    (declared once, in labmake.core.config)."""
    keep = lambda k: k not in without and (only is None or k in only)
    return {k: v for k, v in config.get(name, {}).items() if keep(k)}


def leaf_files(wildcards):
    """The leaf's own files: qna.yaml, its documents, attribution (not sub-leaves)."""
    folder = TAXONOMY / wildcards.leaf
    return sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def all_leaves(template):
    return [template.format(leaf=leaf) for leaf in LEAVES]


def earlier_phases(name):
    return PHASES[: PHASES.index(name)]


def phase_parents(wildcards):
    return [paths.CHECKPOINT_DIR.format(phase=p) for p in earlier_phases(wildcards.phase)]


def phase_replay(wildcards):
    own = PHASE_DATASET[wildcards.phase]
    earlier = {PHASE_DATASET[p] for p in earlier_phases(wildcards.phase)} - {own}
    return [paths.dataset(d) for d in sorted(earlier)]


def phase_evaluation(wildcards):
    # select_by: evaluation scores the phase's checkpoints on the evaluation stage's items.
    phase = next(p for p in CONFIG.train.phases if p.name == wildcards.phase)
    return [paths.dataset("eval")] if phase.select_by == "evaluation" else []


def phase_params(wildcards):
    return next(p for p in config["train"]["phases"] if p["name"] == wildcards.phase)
