"""A taxonomy of thousands of leaves: what a no-op build and a one-leaf edit cost to plan.

In a temp copy of the project (never the real tree), for each size (default 1,000 and 5,000
small skill leaves, fake teacher):
1. Every output of the build is put in place as it would be after a full build (empty files
   and folders, then ``snakemake --touch --forceall`` records every job as Snakemake does when
   a job finishes): what a team has after ``git pull`` with nothing new. Running 3,000+
   real jobs would only add hours, not change what planning has to check.
2. It times ``snakemake -n`` with nothing changed; runs ``labmake build`` once (the team's last
   build: Snakemake finds nothing to do and labmake records what it built from) and times a
   second one (the no-op after ``git pull``: labmake answers without starting Snakemake); then
   edits one leaf's qna.yaml and times ``snakemake -n`` (the plan of that leaf's branch and the
   shared tail).
It prints the times, the targets (no-op <= 5 s, one edit <= 10 s at 1,000 leaves) and the
growth from the first size to the last (linear: about the size ratio, or less).

    .venv/bin/python benchmarks/scale.py [--leaves 1000 5000] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from incremental import BIN, env_for, leaf_name, make_project, write_leaf  # noqa: E402

PROJECT_EXTRA = ("requirements.lock", "requirements-torch.txt")


def snakemake(project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", "profiles/local", *args],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, result


def labmake_build(project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "labmake.cli", "build", *args],
        cwd=project,
        env=env_for(project),
        capture_output=True,
        text=True,
        check=False,
    )
    return time.perf_counter() - start, result


def put_outputs_in_place(project: Path) -> int:
    """Every output as after a full build, recorded in Snakemake's metadata; the job count."""
    _, summary = snakemake(project, "--summary")
    if summary.returncode != 0:
        sys.exit(f"snakemake --summary failed:\n{summary.stderr[-3000:]}")
    outputs = [line.split("\t")[0] for line in summary.stdout.splitlines()[1:] if "\t" in line]
    directories = ("build/base", "build/checkpoints/", "build/model/hf")
    for name in outputs:
        path = project / name
        if name.startswith(directories) and not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    _, touched = snakemake(project, "--touch", "--forceall")
    if touched.returncode != 0:
        sys.exit(f"snakemake --touch failed:\n{touched.stderr[-3000:]}")
    return len(outputs)


def jobs_planned(result: subprocess.CompletedProcess[str]) -> int:
    text = result.stdout + result.stderr
    if "Nothing to be done" in text:
        return 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return -1


def measure(leaves: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="labmake-scale-") as tmp:
        project = make_project(Path(tmp) / "project", leaves)
        for name in PROJECT_EXTRA:
            (project / name).write_bytes((Path(__file__).resolve().parents[1] / name).read_bytes())
        student = project / "student.gguf"
        student.write_bytes(b"GGUF")  # never read: no job runs
        params = project / "params.yaml"
        params.write_text(
            params.read_text(encoding="utf-8").replace("gguf: null", f"gguf: {student}", 1),
            encoding="utf-8",
        )
        start = time.perf_counter()
        outputs = put_outputs_in_place(project)
        setup = time.perf_counter() - start
        noop_snakemake, result = snakemake(project, "-n")
        assert jobs_planned(result) == 0, result.stdout[-2000:]
        # The team's last `labmake build`: Snakemake finds nothing to do, and labmake records
        # what it built from (taxonomy, params.yaml, code, lock, outputs).
        first_build, built = labmake_build(project)
        if built.returncode != 0:
            sys.exit(f"labmake build failed:\n{built.stderr[-3000:]}")
        # After `git pull` with nothing new: the no-op a user waits for.
        noop_build, built = labmake_build(project)
        if built.returncode != 0 or "Snakemake not started" not in built.stderr:
            sys.exit(f"the no-op labmake build ran Snakemake:\n{built.stderr[-3000:]}")
        write_leaf(project, leaves // 2, revision=1)
        edit_plan, planned = snakemake(project, "-n")
        return {
            "leaves": leaves,
            "outputs": outputs,
            "setup_s": round(setup, 1),
            "noop_snakemake_n_s": round(noop_snakemake, 2),
            "first_labmake_build_s": round(first_build, 2),
            "noop_labmake_build_s": round(noop_build, 2),
            "one_edit_snakemake_n_s": round(edit_plan, 2),
            "one_edit_jobs": jobs_planned(planned),
            "edited_leaf": leaf_name(leaves // 2),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rows = []
    for n in args.leaves:
        row = measure(n)
        rows.append(row)
        print(
            f"{n} leaves ({row['outputs']} outputs): no-op snakemake -n "
            f"{row['noop_snakemake_n_s']} s, labmake build {row['first_labmake_build_s']} s "
            f"(records the state), no-op labmake build {row['noop_labmake_build_s']} s, "
            f"one edited leaf snakemake -n {row['one_edit_snakemake_n_s']} s "
            f"({row['one_edit_jobs']} jobs)"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        size = last["leaves"] / first["leaves"]
        for key in ("noop_labmake_build_s", "one_edit_snakemake_n_s"):
            print(f"growth {key}: x{last[key] / first[key]:.2f} for x{size:.0f} leaves")
    print("targets at 1,000 leaves: no-op build <= 5 s, one edited leaf's planning <= 10 s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
