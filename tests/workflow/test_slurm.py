"""The tiny end-to-end build on a real (single-node) SLURM cluster through profiles/slurm.

tests/slurm/up.sh brings the cluster up from Debian's packages (root and apt needed, hence the
`slurm` marker and `make test-slurm`); the build goes through snakemake-executor-plugin-slurm
with the shipped profile, adjusted only where this one node cannot satisfy it (memory). The
test checks what SLURM itself recorded about each job (MinJobAge keeps finished jobs visible)
and that the GGUFs are byte-identical to a local build of the same inputs.

Teacher jobs come several to an allocation (the profile's group-components) and share one
teacher process: a 50-leaf taxonomy's generate jobs are run with one leaf per allocation (as
before the grouping existed) and with the shipped profile, and the allocations SLURM recorded
and the model loads the jobs' logs report are counted for each.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from helpers import REPO, make_tiny_workdir, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.workflow, pytest.mark.model]

UP = REPO / "tests/slurm/up.sh"
DOWN = REPO / "tests/slurm/down.sh"
# The chain through every SLURM-run stage up to one shipped quantization; the evaluation jobs
# add minutes on SLURM and nothing this test checks.
TARGET = "build/model/model.Q8_0.gguf"
GGUFS = ("build/model/model.F16.gguf", TARGET)


def why_no_cluster() -> str | None:
    if os.geteuid() != 0:
        return "needs root: tests/slurm/up.sh installs packages and starts daemons"
    if not shutil.which("apt-get") and not all(
        shutil.which(p) for p in ("slurmctld", "slurmd", "sinfo", "munged")
    ):
        return "needs apt-get (Debian/Ubuntu) or SLURM and munge already installed"
    return None


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A running cluster for the session: up.sh now, down.sh at the end (which leaves alone a
    cluster that was already running). Returns the test node's resources."""
    reason = why_no_cluster()
    if reason:
        pytest.skip(reason)
    # A state dir of our own: a cluster someone brought up by hand counts as already running.
    env = {**os.environ, "LABMAKE_SLURM_STATE": str(tmp_path_factory.mktemp("slurm-state"))}
    up = subprocess.run([UP], env=env, capture_output=True, text=True, timeout=600)
    try:
        assert up.returncode == 0, f"tests/slurm/up.sh failed:\n{up.stdout}\n{up.stderr}"
        partitions = subprocess.run(
            ["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, check=True
        ).stdout.split()
        # A cluster that was running before up.sh is used as it is; it needs profiles/slurm's names.
        assert {"cpu", "gpu"} <= set(partitions), f"need partitions cpu and gpu, have {partitions}"
        node = subprocess.run(
            ["scontrol", "show", "node", "-o"], capture_output=True, text=True, check=True
        ).stdout
        yield {
            "mem_mb": int(re.search(r"RealMemory=(\d+)", node)[1]),
            "cpus": int(re.search(r"CPUTot=(\d+)", node)[1]),
        }
    finally:
        down = subprocess.run([DOWN], env=env, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, f"tests/slurm/down.sh failed:\n{down.stdout}\n{down.stderr}"


def ci_profile(target: Path, node: dict, **overrides: object) -> Path:
    """profiles/slurm, with memory and CPU requests capped at what the test node has (a real
    GPU node has more memory than this machine) and a short first status check (the plugin
    waits 40 s by default, a long time for seconds-long jobs). Everything else is as shipped,
    but for the keys in ``overrides``."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    profile.update(overrides)
    profile["slurm-init-seconds-before-status-checks"] = 3
    for resources in [profile["default-resources"], *profile.get("set-resources", {}).values()]:
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], node["mem_mb"])
        if "cpus_per_task" in resources:
            resources["cpus_per_task"] = min(resources["cpus_per_task"], node["cpus"])
    target.mkdir(parents=True)
    (target / "config.yaml").write_text(yaml.safe_dump(profile))
    return target


def slurm_jobs(workdir: Path) -> list[dict[str, str]]:
    """SLURM's own records (`scontrol show job`) of the jobs run from `workdir`."""
    text = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True
    ).stdout
    jobs = [dict(re.findall(r"(\S+?)=(\S*)", line)) for line in text.splitlines() if line]
    return [job for job in jobs if Path(job.get("WorkDir", "/")).resolve() == workdir.resolve()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def builds(
    slurm_cluster: dict, tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path
) -> tuple[Path, Path]:
    """The same tiny build twice: through the SLURM profile, and locally."""
    on_slurm = make_tiny_workdir(tmp_path_factory.mktemp("slurm-build"), tiny_student_gguf)
    profile = ci_profile(tmp_path_factory.mktemp("profiles") / "slurm-ci", slurm_cluster)
    local = make_tiny_workdir(tmp_path_factory.mktemp("local-build"), tiny_student_gguf)
    # The local build runs meanwhile: SLURM's jobs mostly wait on scheduling and polling.
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(snakemake, local, TARGET)
        result = snakemake(on_slurm, TARGET, profile=profile, timeout=900)
        assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
        result = local_run.result()
        assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
    return on_slurm, local


def jobs_by_rule(workdir: Path) -> dict[str, list[dict[str, str]]]:
    """SLURM's jobs of `workdir` by rule; a group job (the plugin comments it
    rule_<group>_<its rules>) counts under "group:<group>"."""
    by_rule: dict[str, list[dict[str, str]]] = {}
    for job in slurm_jobs(workdir):
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"])[1]
        if rule.startswith("teacher_"):
            rule = "group:teacher"
        by_rule.setdefault(rule, []).append(job)
    return by_rule


def teacher_loads(workdir: Path) -> int:
    """Model loads the teacher jobs' logs report (labmake.teacher.shared logs each one)."""
    logs = [
        *(workdir / "build/logs/generate").rglob("*.log"),
        *(workdir / "build/logs/generate_multiple_choice").rglob("*.log"),
    ]
    return sum(log.read_text().count("teacher: loaded") for log in logs)


def test_jobs_ran_on_slurm_and_training_asked_for_a_gpu(builds: tuple[Path, Path]):
    on_slurm, _ = builds
    by_rule = jobs_by_rule(on_slurm)
    jobs = [job for group in by_rule.values() for job in group]
    assert all(job["JobState"] == "COMPLETED" for job in jobs), jobs
    # Every non-local rule went through sbatch; the two training phases are GPU jobs. The two
    # leaves' generate jobs shared one allocation and one teacher load.
    counts = {rule: len(group) for rule, group in by_rule.items()}
    assert counts == {
        "base_model": 1,
        "group:teacher": 1,
        "train": 2,
        "merge": 1,
        "gguf_f16": 1,
        "quantize": 1,
    }
    for job in by_rule["train"]:
        assert job["Partition"] == "gpu"
        assert "gres:gpu:1" in job.get("TresPerJob", ""), job
    others = [job for rule, group in by_rule.items() if rule != "train" for job in group]
    assert others and all(job["Partition"] == "cpu" for job in others)
    assert not any("gpu" in job.get("TresPerJob", "") for job in others)
    assert teacher_loads(on_slurm) == 1
    # Each job's SLURM log goes where the README says (the plugin deletes those of successful
    # jobs unless slurm-keep-successful-logs is set).
    logs = (on_slurm / ".snakemake/slurm_logs/rule_train").resolve()
    assert all(Path(job["StdOut"]).resolve().is_relative_to(logs) for job in by_rule["train"])


def test_gguf_identical_to_local_build(builds: tuple[Path, Path]):
    on_slurm, local = builds
    for name in GGUFS:
        assert sha256(on_slurm / name) == sha256(local / name), name


LEAVES = 50


def synthetic_taxonomy(workdir: Path, leaves: int) -> list[str]:
    """`leaves` skill leaves, each the test rhymes leaf with a word of its own."""
    shutil.rmtree(workdir / "taxonomy")
    seed = REPO / "tests/data/taxonomy/compositional_skills/test/rhymes"
    names = []
    for i in range(leaves):
        name = f"compositional_skills/synthetic/leaf_{i:03d}"
        folder = workdir / "taxonomy" / name
        shutil.copytree(seed, folder)
        qna = folder / "qna.yaml"
        qna.write_text(qna.read_text().replace("rhymes with", f"rhymes (list {i}) with"))
        names.append(name)
    return names


@pytest.fixture(scope="module")
def fifty_leaves(
    slurm_cluster: dict, tmp_path_factory: pytest.TempPathFactory, tiny_student_gguf: Path
) -> dict[str, Path]:
    """The 50 leaves' generate jobs with one leaf per allocation ("before") and as shipped."""
    runs = {}
    for run, overrides in (("before", {"group-components": ["teacher=1"]}), ("after", {})):
        workdir = make_tiny_workdir(tmp_path_factory.mktemp(f"fifty-{run}"), tiny_student_gguf)
        leaves = synthetic_taxonomy(workdir, LEAVES)
        profile = ci_profile(
            tmp_path_factory.mktemp(f"profiles-{run}") / "slurm-ci", slurm_cluster, **overrides
        )
        targets = [f"build/generated/{leaf}.jsonl" for leaf in leaves]
        result = snakemake(workdir, *targets, profile=profile, timeout=1800)
        assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-6000:])
        runs[run] = workdir
    return runs


def test_fifty_leaves_share_a_teacher_per_allocation(fifty_leaves: dict[str, Path]):
    per_job = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    (components,) = per_job["group-components"]
    leaves_per_job = int(components.split("=")[1])
    before, after = (jobs_by_rule(fifty_leaves[run]) for run in ("before", "after"))
    assert len(before["group:teacher"]) == LEAVES and teacher_loads(fifty_leaves["before"]) == 50
    allocations = -(-LEAVES // leaves_per_job)
    assert len(after["group:teacher"]) == allocations
    assert teacher_loads(fifty_leaves["after"]) == allocations
    assert all(job["JobState"] == "COMPLETED" for job in after["group:teacher"])
    # One teacher process for many leaves answers as each leaf's own would: the same bytes.
    for generated in sorted((fifty_leaves["before"] / "build/generated").rglob("*.jsonl")):
        twin = fifty_leaves["after"] / generated.relative_to(fifty_leaves["before"])
        assert sha256(twin) == sha256(generated), generated
