"""Dry runs of the shipped profiles on the example taxonomy: the DAG is right before anything runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labmake.taxonomy.scan import find_leaves

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def dry_run(tmp_path: Path, profile: str) -> str:
    # A private build folder: the dry run must not see (or touch) a build in the checkout.
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-n",
            "-s",
            str(REPO / "Snakefile"),
            "--profile",
            str(REPO / profile),
            "--configfile",
            str(REPO / "params.yaml"),
            "--config",
            f"taxonomy={{'root': '{REPO / 'taxonomy'}'}}",
        ],
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
