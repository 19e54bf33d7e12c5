"""benchmarks/overhead.py: the share of a build's wall time outside teacher decoding and training
steps, read from a synthetic build folder (logs and Snakemake benchmark files; no build runs)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "overhead.py"
STAMP = "2026-12-03 18:20:01,123"
# Teacher jobs: log path -> (who, requests sent, seconds waiting, answered by the cache).
TEACHER = {
    "generate/knowledge/science/water.log": ("generate", 46, 123.45, 2),
    "generate/compositional_skills/haiku.log": ("generate", 20, 50.25, 0),
    "generate_multiple_choice/knowledge/science/water.log": ("multiple_choice", 7, 20.5, 1),
}
# Teacher model loads: log path -> (seconds, where).
LOADS = {
    "generate/knowledge/science/water.log": (3.5, "this job's own process"),
    "generate/compositional_skills/haiku.log": (4.0, "a shared teacher process (pid 7 on n1)"),
    "evaluate/base.log": (2.5, "this job's own process"),
}
TRAINED = {"knowledge": (36, 163.0), "skills": (12, 40.5)}  # phase -> (steps, seconds)
# Snakemake benchmark files: path under build/benchmarks -> wall seconds of the job.
JOBS = {
    "generate/knowledge/science/water.tsv": 140.0,
    "generate/compositional_skills/haiku.tsv": 60.0,
    "generate_multiple_choice/knowledge/science/water.tsv": 25.0,
    "train/knowledge.tsv": 190.0,
    "train/skills.tsv": 55.0,
    "evaluate/base.tsv": 30.0,
    "retention_reference/all.tsv": 12.0,
    "gguf/F16.tsv": 15.5,
    "seeds/knowledge/science/water.tsv": 1.25,
}
WALL = 600.0


@pytest.fixture(scope="module")
def overhead() -> ModuleType:
    spec = importlib.util.spec_from_file_location("overhead_benchmark", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"{STAMP} {line}\n")


def write_build(root: Path, teacher_lines: dict[str, tuple[str, int, float, int]]) -> Path:
    build = root / "build"
    logs = build / "logs"
    for name in TEACHER:  # every teacher job logs its progress; only newer ones the usage line
        add_line(logs / name, "labmake.sdg.generation: round 0 (samples 0-3): 46 teacher requests")
    for name, (who, sent, seconds, cached) in teacher_lines.items():
        add_line(
            logs / name,
            f"labmake.teacher.complete: {who}: teacher: {sent} requests sent, {seconds:.2f} s "
            f"waiting for answers; {cached} answered by the cache",
        )
    for name, (seconds, where) in LOADS.items():
        add_line(
            logs / name,
            f"labmake.teacher.shared: teacher: loaded qwen-q4 in {seconds:.1f} s in {where}",
        )
    for phase, (steps, seconds) in TRAINED.items():
        add_line(
            logs / "train" / f"{phase}.log",
            f"labmake.training.phase: phase {phase}: trained {steps} step(s) in {seconds:.1f} s "
            f"({seconds / steps:.2f} s/step)",
        )
    for name, seconds in JOBS.items():
        tsv = build / "benchmarks" / name
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(
            f"s\th:m:s\tmax_rss\tcpu_time\n{seconds}\t0:00:{int(seconds) % 60:02d}\t100.5\t{seconds}\n",
            encoding="utf-8",
        )
    return build


def jobs_in(folder: str) -> tuple[int, float]:
    mine = [s for name, s in JOBS.items() if name.split("/")[0] == folder]
    return len(mine), sum(mine)


def in_folder(table: dict[str, tuple], folder: str, index: int) -> float:
    return sum(v[index] for name, v in table.items() if name.split("/")[0] == folder)


def test_sums_shares_and_where_the_rest_goes(overhead: ModuleType, tmp_path: Path):
    figures = overhead.analyse(write_build(tmp_path, TEACHER), WALL)
    teacher_s = sum(v[2] for v in TEACHER.values())
    training_s = sum(s for _, s in TRAINED.values())
    assert figures["teacher_s"] == pytest.approx(teacher_s)
    assert figures["teacher"]["requests"] == sum(v[1] for v in TEACHER.values())
    assert figures["teacher"]["cached"] == sum(v[3] for v in TEACHER.values())
    assert figures["teacher_share"] == pytest.approx(teacher_s / WALL)
    assert figures["training_s"] == pytest.approx(training_s)
    assert figures["training"]["phases"]["skills"] == {"steps": 12, "seconds": 40.5}
    overhead_s = WALL - teacher_s - training_s
    assert figures["overhead_s"] == pytest.approx(overhead_s)
    assert figures["overhead_share"] == pytest.approx(overhead_s / WALL)
    assert figures["goal_met"] is (overhead_s / WALL <= 0.25)
    assert not figures["overhead_is_upper_bound"]
    loads = figures["teacher_loads"]
    assert (loads["count"], loads["shared"]) == (3, 1)
    assert loads["seconds"] == pytest.approx(sum(s for s, _ in LOADS.values()))

    rest = {row["part"]: row for row in figures["rest"]}
    for folder in ("generate", "generate_multiple_choice", "evaluate", "gguf", "seeds"):
        jobs, seconds = jobs_in(folder)
        inside = in_folder(TEACHER, folder, 2) + in_folder(LOADS, folder, 0)
        assert rest[folder]["jobs"] == jobs
        assert rest[folder]["seconds"] == pytest.approx(seconds - inside)
    assert rest["train"]["seconds"] == pytest.approx(jobs_in("train")[1] - training_s)
    assert rest[overhead.OUTSIDE]["seconds"] == pytest.approx(WALL - sum(JOBS.values()))
    # Every second of the overhead is in exactly one row.
    assert sum(row["seconds"] for row in figures["rest"]) == pytest.approx(overhead_s)
    evaluation = jobs_in("evaluate")[1] + jobs_in("retention_reference")[1]
    assert figures["evaluation_folders"] == ["evaluate", "retention_reference"]
    assert figures["overhead_evaluation_as_work_s"] == pytest.approx(overhead_s - evaluation)


def test_goal_met_when_the_overhead_is_small(overhead: ModuleType, tmp_path: Path):
    work = sum(v[2] for v in TEACHER.values()) + sum(s for _, s in TRAINED.values())
    wall = work / 0.8  # overhead 20% of the wall
    figures = overhead.analyse(write_build(tmp_path, TEACHER), wall)
    assert figures["overhead_share"] == pytest.approx(0.2)
    assert figures["goal_met"] is True
    assert "goal <= 25.0%: met" in overhead.report(figures)


def test_an_older_build_has_no_teacher_time(overhead: ModuleType, tmp_path: Path):
    figures = overhead.analyse(write_build(tmp_path, {}), WALL)
    training_s = sum(s for _, s in TRAINED.values())
    assert figures["teacher_s"] is None and figures["teacher_share"] is None
    assert figures["overhead_is_upper_bound"]
    assert figures["overhead_s"] == pytest.approx(WALL - training_s)
    text = overhead.report(figures)
    assert "teacher time not recorded (a build older than this script)" in text
    assert "upper bound" in text
    generate = next(row for row in figures["rest"] if row["part"].startswith("generate "))
    assert generate["seconds"] == pytest.approx(
        jobs_in("generate")[1] - in_folder(LOADS, "generate", 0)
    )


def test_a_teacher_job_without_the_line_makes_an_upper_bound(overhead: ModuleType, tmp_path: Path):
    some = dict(list(TEACHER.items())[:2])
    figures = overhead.analyse(write_build(tmp_path, some), WALL)
    assert figures["teacher_s"] == pytest.approx(sum(v[2] for v in some.values()))
    assert figures["overhead_is_upper_bound"]
    assert f"recorded in only 2 of {len(TEACHER)} job logs" in overhead.report(figures)


def test_command_line_reads_a_finished_build(overhead: ModuleType, tmp_path: Path):
    build = write_build(tmp_path, TEACHER)
    out = tmp_path / "overhead.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--build-dir",
            str(build),
            "--wall",
            str(WALL),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures == json.loads(json.dumps(overhead.analyse(build, WALL)))
    assert f"wall time: {WALL:.1f} s" in result.stdout
    assert f"overhead (wall - teacher - training): {figures['overhead_s']:.1f} s" in result.stdout
    assert overhead.OUTSIDE in result.stdout
    assert not (tmp_path / "build-output.log").exists()  # nothing was built


def test_build_dir_needs_its_wall_time(overhead: ModuleType, tmp_path: Path):
    with pytest.raises(SystemExit) as exc:
        overhead.main(["--build-dir", str(tmp_path)])
    assert exc.value.code == 2
