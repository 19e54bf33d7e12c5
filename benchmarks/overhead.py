"""Where a build's wall time goes: teacher decoding and training steps, or overhead (issue 18).

Runs the default build (`labmake build`) in a fresh copy of the project (Snakefile, rules,
scripts, profiles, src/labmake, params.yaml, taxonomy, the lock files): an empty build/ and an
empty teacher request cache, so every teacher request is decoded. The copy's own code runs
(PYTHONPATH=<copy>/src, OMP_WAIT_POLICY=PASSIVE). Its wall time is measured here; the rest comes
from the build's logs and Snakemake's benchmark files:

- teacher answering: each teacher job's log line "<who>: teacher: N requests sent, S s waiting
  for answers; C answered by the cache" (build/logs/generate/, .../generate_multiple_choice/);
- teacher model loads: "teacher: loaded <model> in S s in ..." in any job's log;
- training steps: "phase P: trained N step(s) in S s" (build/logs/train/);
- each job's wall seconds: build/benchmarks/<folder>/**.tsv (column `s`).

It prints the wall time, the shares of teacher answering and training steps, the overhead
(wall - teacher - training: process starts, imports, model loads, conversions, Snakemake)
against the goal (<= 25% of the wall on the example build), the same share with evaluation
scoring (evaluate, retention_reference, lm_eval) counted as work, since evaluating is the build's
job too, and where the overhead goes: per benchmark folder its jobs' seconds less the teacher
answering, training steps and model loads inside them, the model loads, and the time outside
any job (Snakemake, labmake build's own checks) = wall - the sum of all jobs' seconds. That last
figure assumes jobs run one at a time (the local profile on a 2-core machine); with parallel
jobs the jobs' seconds add up to more than the wall, and it is a lower bound (even negative).

Logs of builds older than this script have no teacher line: the teacher time is then reported
as not recorded, and the overhead printed is an upper bound that includes teacher decoding.

    .venv/bin/python benchmarks/overhead.py [--workdir DIR] [--json OUT]
    .venv/bin/python benchmarks/overhead.py --build-dir build --wall SECONDS [--json OUT]

The second form runs nothing: it reads a finished build, given the wall time it took.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from stage_times import folder_seconds  # noqa: E402  (one reading of the benchmark files)
from try_leaf import copy_project  # noqa: E402  (the same copy of the project's build inputs)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOAL = 0.25
TEACHER_FOLDERS = ("generate", "generate_multiple_choice")
TRAIN_FOLDER = "train"
EVAL_FOLDERS = ("evaluate", "retention_reference", "lm_eval")
OUTSIDE = "outside any job (Snakemake, labmake build's own checks)"
TEACHER_LINE = re.compile(
    r": teacher: (\d+) requests sent, ([\d.]+) s waiting for answers; (\d+) answered by the cache"
)
LOAD_LINE = re.compile(r"teacher: loaded (.+?) in ([\d.]+) s in (this job's own|a shared teacher)")
TRAINED_LINE = re.compile(r"phase (\S+): trained (\d+) step\(s\) in ([\d.]+) s")


def build_env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project / "src"), env.get("PYTHONPATH")) if p
    )
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    # The copy's own, empty request cache: not a `labmake try` cache named from outside.
    env.pop("LABMAKE_TEACHER_CACHE", None)
    return env


def run_build(project: Path) -> float:
    """Run `labmake build` in project; its wall seconds. Its output goes to build-output.log."""
    out = project / "build-output.log"
    print(f"building in {project} (output: {out}) ...", file=sys.stderr)
    with out.open("w", encoding="utf-8") as fh:
        start = time.monotonic()
        result = subprocess.run(
            [str(BIN / "labmake"), "build"],
            cwd=project,
            env=build_env(project),
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
        )
        wall = time.monotonic() - start
    if result.returncode != 0:
        tail = out.read_text(encoding="utf-8", errors="replace")[-4000:]
        sys.exit(f"labmake build failed ({result.returncode}):\n{tail}")
    return wall


def log_files(build: Path, folder: str = "") -> list[Path]:
    base = build / "logs" / folder if folder else build / "logs"
    return sorted(p for p in base.rglob("*.log") if p.is_file())


def read_log(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def teacher_usage(build: Path) -> dict[str, Any]:
    """The teacher jobs' own count of requests and seconds waiting for answers."""
    usage: dict[str, Any] = {"logs": 0, "recorded_logs": 0, "requests": 0, "cached": 0}
    by_folder: dict[str, float] = defaultdict(float)
    for folder in TEACHER_FOLDERS:
        for path in log_files(build, folder):
            usage["logs"] += 1
            lines = TEACHER_LINE.findall(read_log(path))
            usage["recorded_logs"] += bool(lines)
            for sent, seconds, cached in lines:
                usage["requests"] += int(sent)
                usage["cached"] += int(cached)
                by_folder[folder] += float(seconds)
    usage["by_folder"] = dict(by_folder)
    usage["seconds"] = sum(by_folder.values()) if usage["recorded_logs"] else None
    return usage


def model_loads(build: Path) -> dict[str, Any]:
    """Teacher model loads anywhere in the build (generation, multiple choice, the judge)."""
    loads: dict[str, Any] = {"count": 0, "shared": 0, "seconds": 0.0}
    by_folder: dict[str, float] = defaultdict(float)
    logs = build / "logs"
    for path in log_files(build):
        for _model, seconds, where in LOAD_LINE.findall(read_log(path)):
            loads["count"] += 1
            loads["shared"] += where == "a shared teacher"
            loads["seconds"] += float(seconds)
            by_folder[path.relative_to(logs).parts[0]] += float(seconds)
    loads["by_folder"] = dict(by_folder)
    return loads


def training_steps(build: Path) -> dict[str, Any]:
    """Seconds spent in training steps, per phase, from the train logs."""
    phases: dict[str, dict[str, float]] = {}
    for path in log_files(build, TRAIN_FOLDER):
        for phase, steps, seconds in TRAINED_LINE.findall(read_log(path)):
            entry = phases.setdefault(phase, {"steps": 0, "seconds": 0.0})
            entry["steps"] += int(steps)
            entry["seconds"] += float(seconds)
    return {"phases": phases, "seconds": sum(p["seconds"] for p in phases.values())}


def where_the_rest_goes(
    build: Path, wall: float, teacher: dict[str, Any], training: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, dict[str, float]]]:
    """Rows of the overhead: each folder's jobs less the work and loads in them, the loads,
    and the time outside any job. Also the loads and the per-folder job figures."""
    jobs = folder_seconds(build / "benchmarks")
    loads = model_loads(build)
    rows = []
    for folder, entry in jobs.items():
        inside = teacher["by_folder"].get(folder, 0.0) + loads["by_folder"].get(folder, 0.0)
        if folder == TRAIN_FOLDER:
            inside += training["seconds"]
        part = folder
        if folder in TEACHER_FOLDERS and teacher["recorded_logs"] < teacher["logs"]:
            part += " (teacher answering not recorded: included)"
        rows.append(
            {"part": part, "jobs": int(entry["jobs"]), "seconds": entry["seconds"] - inside}
        )
    loaded = f"teacher model loads ({loads['count']}, {loads['shared']} in a shared process)"
    rows.append({"part": loaded, "jobs": None, "seconds": loads["seconds"]})
    outside = wall - sum(e["seconds"] for e in jobs.values())
    rows.append({"part": OUTSIDE, "jobs": None, "seconds": outside})
    rows.sort(key=lambda row: -row["seconds"])
    for row in rows:
        row["share"] = share(row["seconds"], wall)
    return rows, loads, jobs


def share(seconds: float, wall: float) -> float:
    return seconds / wall if wall > 0 else 0.0


def analyse(build: Path, wall: float) -> dict[str, Any]:
    """Every figure of the report, from a finished build and its wall seconds."""
    teacher = teacher_usage(build)
    training = training_steps(build)
    rows, loads, jobs = where_the_rest_goes(build, wall, teacher, training)
    teacher_s = teacher["seconds"] or 0.0
    overhead = wall - teacher_s - training["seconds"]
    evaluation = sum(jobs[f]["seconds"] for f in EVAL_FOLDERS if f in jobs)
    return {
        "build": str(build),
        "wall_s": wall,
        "teacher": teacher,
        "teacher_s": teacher["seconds"],
        "teacher_share": None if teacher["seconds"] is None else share(teacher_s, wall),
        # Without every teacher job's line, teacher decoding is counted as overhead.
        "overhead_is_upper_bound": teacher["recorded_logs"] < teacher["logs"],
        "training": training,
        "training_s": training["seconds"],
        "training_share": share(training["seconds"], wall),
        "overhead_s": overhead,
        "overhead_share": share(overhead, wall),
        "goal_share": GOAL,
        "goal_met": share(overhead, wall) <= GOAL,
        "evaluation_folders": [f for f in EVAL_FOLDERS if f in jobs],
        "evaluation_s": evaluation,
        "overhead_evaluation_as_work_s": overhead - evaluation,
        "overhead_evaluation_as_work_share": share(overhead - evaluation, wall),
        "teacher_loads": loads,
        "jobs": jobs,
        "rest": rows,
    }


def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def teacher_lines(figures: dict[str, Any]) -> list[str]:
    teacher = figures["teacher"]
    if teacher["seconds"] is None:
        return [
            f"teacher answering: teacher time not recorded (a build older than this script): "
            f"none of {teacher['logs']} teacher job logs has the line; counted as overhead below"
        ]
    line = (
        f"teacher answering: {teacher['seconds']:.1f} s ({pct(figures['teacher_share'])}), "
        f"{teacher['requests']} requests sent, {teacher['cached']} answered by the cache"
    )
    if teacher["recorded_logs"] < teacher["logs"]:
        line += f"; recorded in only {teacher['recorded_logs']} of {teacher['logs']} job logs"
    return [line]


def summary_lines(figures: dict[str, Any]) -> list[str]:
    wall = figures["wall_s"]
    phases = ", ".join(
        f"{name} {p['steps']:.0f} steps {p['seconds']:.1f} s"
        for name, p in figures["training"]["phases"].items()
    )
    bound = (
        " (upper bound: includes teacher decoding)" if figures["overhead_is_upper_bound"] else ""
    )
    verdict = "met" if figures["goal_met"] else "NOT met"
    evaluation = ", ".join(figures["evaluation_folders"]) or "none in this build"
    return [
        f"build: {figures['build']}",
        f"wall time: {wall:.1f} s",
        *teacher_lines(figures),
        f"training steps: {figures['training_s']:.1f} s ({pct(figures['training_share'])})"
        + (f" [{phases}]" if phases else " (no 'trained' line in build/logs/train)"),
        f"overhead (wall - teacher - training): {figures['overhead_s']:.1f} s "
        f"({pct(figures['overhead_share'])}){bound}; goal <= {pct(GOAL)}: {verdict}",
        f"overhead with evaluation scoring counted as work ({evaluation}: "
        f"{figures['evaluation_s']:.1f} s): {figures['overhead_evaluation_as_work_s']:.1f} s "
        f"({pct(figures['overhead_evaluation_as_work_share'])})",
    ]


def rest_lines(figures: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "where the overhead goes (job folders: their jobs' seconds less teacher answering, "
        "training steps and teacher model loads in them):",
        "| part | jobs | seconds | share of wall |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in figures["rest"]:
        jobs = "" if row["jobs"] is None else row["jobs"]
        lines.append(f"| {row['part']} | {jobs} | {row['seconds']:.1f} | {pct(row['share'])} |")
    total = sum(row["seconds"] for row in figures["rest"])
    lines.append(f"| **sum** | | {total:.1f} | {pct(share(total, figures['wall_s']))} |")
    return lines


def report(figures: dict[str, Any]) -> str:
    return "\n".join(summary_lines(figures) + rest_lines(figures))


def measure(workdir: Path) -> tuple[Path, float]:
    """Copy the project into workdir and build there: the build folder and its wall seconds."""
    project = copy_project(workdir)
    return project / "build", run_build(project)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, help="build here (kept) instead of a temp folder")
    parser.add_argument("--build-dir", type=Path, help="analyse this finished build, run nothing")
    parser.add_argument("--wall", type=float, help="with --build-dir: its wall seconds")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    if (args.build_dir is None) != (args.wall is None):
        parser.error("--build-dir and --wall go together")
    if args.build_dir is not None:
        figures = analyse(args.build_dir, args.wall)
    elif args.workdir is not None:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            parser.error(f"--workdir {args.workdir}: not empty")
        figures = analyse(*measure(args.workdir))
    else:
        with tempfile.TemporaryDirectory(prefix="labmake-overhead-") as tmp:
            figures = analyse(*measure(Path(tmp)))
    print(report(figures))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
