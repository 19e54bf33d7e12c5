"""Dry runs of the shipped profiles on the example taxonomy: the DAG is right before anything runs."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from labmake.taxonomy.scan import find_leaves

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def dry_run(tmp_path: Path, profile: str, params: dict[str, Any] | None = None) -> str:
    """A dry run of the example taxonomy with ``profile``, and ``params`` over params.yaml (a
    second config file: --config passes nested values as strings)."""
    # A private build folder: the dry run must not see (or touch) a build in the checkout.
    extra = tmp_path / "extra-params.yaml"
    extra.write_text(
        yaml.safe_dump({**(params or {}), "taxonomy": {"root": str(REPO / "taxonomy")}})
    )
    result = subprocess.run(
        [SNAKEMAKE, "-n", "-s", str(REPO / "Snakefile"), "--profile", str(REPO / profile)]
        + ["--configfile", str(REPO / "params.yaml"), str(extra)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.parametrize("profile", ["profiles/local", "profiles/slurm"])
def test_dry_run_plans_every_leaf_and_the_tail(tmp_path, profile):
    text = dry_run(tmp_path, profile)
    leaves = find_leaves(REPO / "taxonomy")
    assert len(leaves) == 4
    for leaf in leaves:
        for stage in ("seeds", "generated", "filtered"):
            assert f"build/{stage}/{leaf}." in text
    stats = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", text.split("Job stats:", 1)[1], re.MULTILINE))
    assert stats["seeds"] == stats["generate"] == stats["filter"] == "4"
    quants = yaml.safe_load((REPO / "params.yaml").read_text())["export"]["quantizations"]
    assert stats["train"] == "2" and stats["quantize"] == str(len(quants)) and stats["mix"] == "1"
    if profile == "profiles/slurm":
        train_jobs = re.findall(r"rule train:.*?resources: ([^\n]*)", text, re.DOTALL)
        assert len(train_jobs) == 2 and all(
            "gpu=1" in r and "slurm_partition=gpu" in r for r in train_jobs
        )


def gpus(text: str) -> dict[str, set[str]]:
    """Each generate* rule and each evaluated model -> the gpu resources of its jobs."""
    out: dict[str, set[str]] = {}
    job = ""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("rule", "localrule") and words[1].endswith(":"):
            job = words[1][:-1]
        elif words[:1] == ["wildcards:"] and job == "evaluate":
            job = "evaluate " + words[1].removeprefix("model=").rstrip(",")
        elif words[:1] == ["resources:"] and job.startswith(("generate", "evaluate")):
            gpu = [w.rstrip(",") for w in words if w.startswith("gpu=")]
            out.setdefault(job, set()).update(gpu or ["none"])
    return out


CPU = {"gpu=0"}
GPU = {"gpu=1"}
URL = "http://127.0.0.1:8000/v1"
HF_MODELS = {"evaluate phase-knowledge", "evaluate phase-skills", "evaluate tuned"}


@pytest.mark.parametrize(
    ("params", "teacher_gpu", "gguf_eval_gpu"),
    [
        ({}, CPU, CPU),
        ({"teacher": {"n_gpu_layers": -1}}, GPU, CPU),
        ({"evaluate": {"n_gpu_layers": -1}}, CPU, GPU),
        # A teacher behind HTTP runs no llama.cpp in the job: its layers are not the job's.
        ({"teacher": {"backend": "openai", "base_url": URL, "n_gpu_layers": -1}}, CPU, CPU),
    ],
)
def test_slurm_jobs_ask_for_a_gpu_only_with_layers_on_it(
    tmp_path, params, teacher_gpu, gguf_eval_gpu
):
    found = gpus(dry_run(tmp_path, "profiles/slurm", params))
    assert found["generate"] == found["generate_multiple_choice"] == teacher_gpu
    assert found["evaluate base"] == found["evaluate gguf-Q4_K_M"] == gguf_eval_gpu
    assert all(found[m] == CPU for m in HF_MODELS)  # torch on the CPU: never a GPU
