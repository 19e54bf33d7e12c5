"""Incremental rebuild cost, measured on a synthetic taxonomy (issue "Build guarantees").

In a temp copy of the project (never the real tree):
1. N small skill leaves (default 8), the fast fake teacher; build the data stages (seeds,
   generate, filter, mix: target build/data/mix.json), then edit one leaf and rebuild.
   Prints the data-stage time of the incremental build over the full one (the sum of the
   jobs' own times from Snakemake's benchmark files; target <= 1.5/N), the same ratio in wall
   time (which also counts Snakemake's fixed start-up), and the teacher requests sent by
   untouched leaves' jobs (target 0; the fake teacher logs each request with its job's leaf).
2. A no-op `labmake plan` at a large taxonomy (default 1,000 leaves): the "last build"'s seeds
   files are written with labmake's own seeds function (the stage's code, in-process, to avoid
   1,000 Snakemake jobs), then `labmake plan` runs as a command; target <= 5 s.

    .venv/bin/python benchmarks/incremental.py [--leaves 8] [--plan-leaves 1000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = ("Snakefile", "rules", "scripts", "profiles", "src/labmake")
DATA_RULES = ("seeds", "generate", "filter", "mix")
TARGET = "build/data/mix.json"
TEACHER_LOG_ENV = "LABMAKE_FAKE_TEACHER_LOG"  # labmake.testing.fake_teacher.REQUEST_LOG_ENV
TOPICS = ("river", "forest", "harbour", "desert", "glacier", "meadow", "canyon", "island")


def marker(i: int) -> str:
    """A word of leaf i's own, so no two leaves have the same prompts."""
    return f"Qz{i:05d}x"


def leaf_name(i: int) -> str:
    return f"compositional_skills/synthetic/leaf_{i:05d}"


def write_leaf(root: Path, i: int, revision: int = 0) -> None:
    topic = TOPICS[i % len(TOPICS)]
    word = marker(i)
    places = ("north", "south", "east", "west", "centre")
    examples = [
        {
            "question": f"In the {word} guide, what lies to the {place} of the {topic}?",
            "answer": f"The {word} guide says a small {topic} path lies to the {place}"
            + (f", revision {revision}." if revision else "."),
        }
        for place in places
    ]
    doc = {
        "version": 2,
        "created_by": "labmake-benchmark",
        "task_description": f"Answer questions from the {word} guide to the {topic}.",
        "seed_examples": examples,
    }
    folder = root / "taxonomy" / leaf_name(i)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qna.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    (folder / "attribution.txt").write_text(
        "Title of work: synthetic benchmark leaf\nLink to work: none\nRevision: 1\n"
        "License of the work: Apache-2.0\nCreator names: labmake benchmark\n",
        encoding="utf-8",
    )


def small_params() -> dict[str, Any]:
    """The repository's params.yaml with the fake teacher and small per-leaf counts."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["teacher"] = {**params["teacher"], "backend": "fake-for-tests", "n_ctx": 1024}
    generate = params.setdefault("generate", {})
    generate["requests_per_leaf"] = 4
    # The single-step pipeline: the fake teacher's answers pass no judge reliably at 4 requests.
    if "pipeline" in generate:
        generate["pipeline"] = "simple"
    return params


def make_project(dst: Path, leaves: int) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT_FILES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dst / name, ignore=ignore)
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    for i in range(leaves):
        write_leaf(dst, i)
    (dst / "params.yaml").write_text(yaml.safe_dump(small_params()), encoding="utf-8")
    return dst


def env_for(project: Path, teacher_log: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project / "src"), env.get("PYTHONPATH")) if p
    )
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # The fake teacher is a plugin of the teacher registry; production code never imports it.
    env.setdefault("LABMAKE_TEACHER_PLUGINS", "labmake.testing.fake_teacher")
    if teacher_log is not None:
        env[TEACHER_LOG_ENV] = str(teacher_log)
    return env


def build_data(project: Path, teacher_log: Path) -> tuple[float, float, int]:
    """Build the data stages; (wall seconds, summed job seconds, jobs run)."""
    shutil.rmtree(project / "build/benchmarks", ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/local", TARGET],
        cwd=project,
        env=env_for(project, teacher_log),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"snakemake failed:\n{result.stderr[-4000:]}")
    job_seconds, jobs = 0.0, 0
    for rule in DATA_RULES:
        for tsv in (project / "build/benchmarks" / rule).rglob("*.tsv"):
            with tsv.open(newline="") as f:
                row = next(csv.DictReader(f, delimiter="\t"))
            job_seconds += float(row["s"])
            jobs += 1
    return wall, job_seconds, jobs


def requests_per_leaf(teacher_log: Path) -> dict[str, int]:
    """Teacher requests by the leaf of the Snakemake job that sent them."""
    from labmake.testing.fake_teacher import read_request_log

    counts: dict[str, int] = {}
    for entry in read_request_log(teacher_log):
        key = entry["leaf"] or f"<{entry['rule']}>"
        counts[key] = counts.get(key, 0) + 1
    return counts


def incremental(workdir: Path, leaves: int) -> dict[str, Any]:
    project = make_project(workdir / "incremental", leaves)
    log = workdir / "teacher.log"
    full_wall, full_jobs_s, full_jobs = build_data(project, log)
    full_requests = requests_per_leaf(log)
    log.unlink(missing_ok=True)
    edited = leaves // 2
    write_leaf(project, edited, revision=1)
    inc_wall, inc_jobs_s, inc_jobs = build_data(project, log)
    counts = requests_per_leaf(log)
    untouched = sum(n for leaf, n in counts.items() if leaf != leaf_name(edited))
    return {
        "leaves": leaves,
        "full": {"wall_s": full_wall, "job_s": full_jobs_s, "jobs": full_jobs},
        "incremental": {"wall_s": inc_wall, "job_s": inc_jobs_s, "jobs": inc_jobs},
        "data_stage_ratio": inc_jobs_s / full_jobs_s,
        "wall_ratio": inc_wall / full_wall,
        "target_ratio": 1.5 / leaves,
        "teacher_requests_full": sum(full_requests.values()),
        "teacher_requests_edited_leaf": counts.get(leaf_name(edited), 0),
        "teacher_requests_untouched_leaves": untouched,
    }


def noop_plan(workdir: Path, leaves: int) -> dict[str, Any]:
    from labmake.core.config import load
    from labmake.taxonomy.leaf import load_leaf
    from labmake.taxonomy.seeds import leaf_record

    project = workdir / "plan"
    project.mkdir()
    for i in range(leaves):
        write_leaf(project, i)
    (project / "params.yaml").write_text(yaml.safe_dump(small_params()), encoding="utf-8")
    cfg = load(project / "params.yaml")
    start = time.perf_counter()
    for i in range(leaves):
        record = leaf_record(load_leaf(project / "taxonomy", leaf_name(i)), cfg.seeds, None)
        out = project / "build/seeds" / f"{leaf_name(i)}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, sort_keys=True), encoding="utf-8")
    seeds_s = time.perf_counter() - start
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "labmake.cli", "plan", "--format", "json"],
        cwd=project,
        env=env_for(ROOT),
        capture_output=True,
        text=True,
        check=False,
    )
    plan_s = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"labmake plan failed:\n{result.stderr[-4000:]}")
    totals = json.loads(result.stdout)["totals"]
    if totals["unchanged"] != leaves or totals["leaves_to_generate"] != 0:
        sys.exit(f"labmake plan did not see a no-op: {totals}")
    return {"leaves": leaves, "plan_s": plan_s, "target_s": 5.0, "seeds_written_s": seeds_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=8)
    parser.add_argument("--plan-leaves", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    workdir = Path(tempfile.mkdtemp(prefix="labmake-bench-"))
    try:
        inc = incremental(workdir, args.leaves)
        plan = noop_plan(workdir, args.plan_leaves)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"incremental": inc, "noop_plan": plan}, indent=2, sort_keys=True))
        return 0
    ok = {True: "ok", False: "MISSED"}
    print(f"synthetic taxonomy: {inc['leaves']} skill leaves, fake teacher, data stages only")
    print(
        f"  full build:        {inc['full']['jobs']:3d} jobs, {inc['full']['job_s']:6.1f} s of "
        f"job time, {inc['full']['wall_s']:6.1f} s wall"
    )
    print(
        f"  one leaf edited:   {inc['incremental']['jobs']:3d} jobs, "
        f"{inc['incremental']['job_s']:6.1f} s of job time, {inc['incremental']['wall_s']:6.1f} s wall"
    )
    print(
        f"  data-stage time ratio incremental/full: {inc['data_stage_ratio']:.3f} "
        f"(target <= 1.5/N = {inc['target_ratio']:.3f}: "
        f"{ok[inc['data_stage_ratio'] <= inc['target_ratio']]}); wall ratio {inc['wall_ratio']:.3f}"
    )
    print(
        f"  teacher requests: {inc['teacher_requests_full']} in the full build, "
        f"{inc['teacher_requests_edited_leaf']} for the edited leaf, "
        f"{inc['teacher_requests_untouched_leaves']} for untouched leaves (target 0: "
        f"{ok[inc['teacher_requests_untouched_leaves'] == 0]})"
    )
    print(
        f"no-op `labmake plan` at {plan['leaves']} leaves: {plan['plan_s']:.2f} s "
        f"(target <= 5 s: {ok[plan['plan_s'] <= 5.0]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
