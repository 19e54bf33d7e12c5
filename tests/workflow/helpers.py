"""Shared pieces of the workflow tests: the tiny build (2-leaf test taxonomy, tiny random
student, deterministic fake teacher) and a snakemake runner.

Test modules in tests/workflow import it as `helpers` (pytest puts this folder on sys.path).
Keep it small and stable: several test modules build on it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
KNOWLEDGE = "knowledge/test/lighthouses"
SKILL = "compositional_skills/test/rhymes"


def tiny_params(student_gguf: Path) -> dict:
    """params.yaml shrunk to seconds of work: the fake teacher, 4 steps per phase."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["student"] = {"gguf": str(student_gguf)}
    params["teacher"] = {**params["teacher"], "backend": "fake-for-tests", "n_ctx": 1024}
    params["generate"] = {"requests_per_leaf": 4, "examples_per_prompt": 3}
    params["train"]["max_seq_len"] = 128
    for phase in params["train"]["phases"]:
        phase.update(max_steps=4, batch_size=2, learning_rate=1e-2, warmup_steps=0)
    params["evaluate"] = {"max_new_tokens": 8, "n_threads": 1}
    return params


def make_tiny_workdir(workdir: Path, student_gguf: Path, params: dict | None = None) -> Path:
    """Fill `workdir` with the test taxonomy and a tiny params.yaml; returns `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "tests/data/taxonomy", workdir / "taxonomy")
    params = tiny_params(student_gguf) if params is None else params
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return workdir


def snakemake(
    workdir: Path, *args: str, profile: str | Path = "profiles/local", timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run the project's Snakefile in `workdir` with a profile (relative to the repo or absolute)."""
    command = [
        SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--profile",
        str(REPO / profile),
        *args,
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout)


def planned_jobs(workdir: Path, profile: str | Path = "profiles/local") -> dict[str, int]:
    """Rule -> job count of a dry run (Snakemake's "Job stats" table); {} if nothing to do."""
    result = snakemake(workdir, "-n", profile=profile)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    jobs = dict((m[0], int(m[1])) for m in re.findall(r"^(\w+)\s+(\d+)\s*$", table, re.MULTILINE))
    jobs.pop("total", None)
    return jobs


BIN = Path(sys.executable).parent
# What a project tree needs to build (the taxonomy and params.yaml are the test's own).
PROJECT_FILES = ("Snakefile", "rules", "scripts", "profiles", "src/labmake")


# ------------------------------------------------------------------ a project copy, and runs


def copy_project(dst: Path, student_gguf: Path, params: dict | None = None) -> Path:
    """A runnable copy of the project in ``dst``: build files, labmake's source, the test
    taxonomy and a tiny params.yaml. Run commands in it with :func:`project_env`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    shutil.copytree(REPO / "tests/data/taxonomy", dst / "taxonomy")
    params = tiny_params(student_gguf) if params is None else params
    (dst / "params.yaml").write_text(yaml.safe_dump(params))
    return dst


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for commands in a project copy: its own labmake first on the path (so
    the rules' code inputs are the copy's files) and this interpreter's tools on PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(extra)
    return env


def run(root: Path, *command: str, env: dict[str, str] | None = None, timeout: float = 900):
    return subprocess.run(
        list(command),
        cwd=root,
        env=env or project_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def project_snakemake(root: Path, *args: str, env: dict[str, str] | None = None):
    result = run(root, str(BIN / "snakemake"), "--profile", "profiles/local", *args, env=env)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    return result


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]
    reason: str
    output: str = ""


JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


def dry_run(root: Path, *targets: str) -> list[Job]:
    """The jobs ``snakemake -n`` plans (rule ``all`` left out); [] when nothing is to be done."""
    result = project_snakemake(root, "-n", *targets)
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return []
    jobs: list[Job] = []
    rule, wildcards, reason, output = None, {}, "", ""
    for line in text.splitlines() + [""]:
        header = JOB_HEADER.match(line.strip())
        if header or not line.strip():
            if rule is not None and rule != "all":
                jobs.append(Job(rule, wildcards, reason, output))
            rule, wildcards, reason, output = None, {}, "", ""
            if header:
                rule = header.group(1)
        elif rule is not None and line.strip().startswith("output:"):
            output = line.split(":", 1)[1].strip()
        elif rule is not None and line.strip().startswith("wildcards:"):
            pairs = line.split(":", 1)[1].split(", ")
            wildcards = dict(pair.strip().split("=", 1) for pair in pairs)
        elif rule is not None and line.strip().startswith("reason:"):
            reason = line.split(":", 1)[1].strip()
    return jobs
