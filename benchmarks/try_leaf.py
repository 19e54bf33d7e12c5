"""`labmake try` on a new skill leaf, against the targets, with the embedded model.

    python benchmarks/try_leaf.py [--workdir DIR] [--examples] [--json FILE]

A frozen copy of the project (build files, labmake's source, the example taxonomy, params.yaml)
is made in a scratch folder and committed to git; a new skill leaf (plurals of English nouns) is
added, uncommitted, as a contributor would. Then, with the embedded teacher and student:

  1. `labmake try --base HEAD`: picks the new leaf, from start to side-by-side answers  <= 300 s
  2. one word of one training seed's answer edited, `labmake try` again                <= 120 s
  3. `labmake try` with no edit: no job runs, the last result is printed                  0 jobs

With --examples, each example leaf is tried too (a try folder each, `--from-base`) and its
reference NLL before and after, with the interval, is printed (the README's table). The student
conversion cache (~/.cache/labmake/models) is used as it is (warm after one build); the teacher
cache starts empty. Times depend on the machine's load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECT_FILES = (
    "Snakefile",
    "rules",
    "scripts",
    "profiles",
    "src/labmake",
    "params.yaml",
    "requirements.lock",
    "requirements-torch.txt",
    "taxonomy",
)
LEAF = "compositional_skills/language/freeform/plurals"
QNA = """version: 2
created_by: labmake
task_description: >-
  Give the plural of an English noun in one short sentence, irregular plurals included.
seed_examples:
  - question: What is the plural of mouse?
    answer: The plural of mouse is mice.
  - question: What is the plural of child?
    answer: The plural of child is children.
  - question: What is the plural of box?
    answer: The plural of box is boxes.
  - question: What is the plural of leaf?
    answer: The plural of leaf is leaves.
  - question: What is the plural of tooth?
    answer: The plural of tooth is teeth.
  - question: What is the plural of city?
    answer: The plural of city is cities.
"""
ATTRIBUTION = """Title of work: Plurals of English nouns
Link to work: none; written for labmake
Revision: 1
License of the work: Apache-2.0
Creator names: the labmake authors
"""
EXAMPLES = (
    "compositional_skills/writing/freeform/haiku",
    "compositional_skills/extraction/grounded/meeting_action_items",
    "knowledge/science/water_cycle",
    "knowledge/history/printing_press",
)
TARGETS = {"first": 300.0, "edit": 120.0}


def copy_project(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=ignore)
        elif src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    return dst


def env(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(project / "src"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_WAIT_POLICY": "PASSIVE",
        "COLUMNS": "120",
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.org",
    }


def run(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        list(args), cwd=project, env=env(project), capture_output=True, text=True
    )
    if check and result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def labmake_try(project: Path, *args: str, folder: str = "build/try") -> dict:
    """One `labmake try`: its wall time, what it ran, its result (the try folder's record)."""
    started, cpu = time.monotonic(), _cpu()
    result = run(project, str(BIN / "labmake"), "try", "--dir", folder, *args)
    seconds, cpu = time.monotonic() - started, _cpu() - cpu
    record = json.loads((project / folder / "last-try.json").read_text())
    print(result.stdout)
    load = round(os.getloadavg()[0], 1)
    return {"seconds": round(seconds, 1), "cpu_s": round(cpu, 1), "load": load, **record}


def _cpu() -> float:
    """CPU seconds of every finished child process, theirs included: the work a try did,
    whatever else the machine was running (on 2 idle cores it takes at least half as long)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def edit_a_training_seed(project: Path) -> str:
    """One word of one seed answer that is trained on (not held out), changed."""
    held_out = {
        json.loads(line)["answer"]
        for line in (project / "build/try/build/data/eval.jsonl").read_text().splitlines()
    }
    qna = project / "taxonomy" / LEAF / "qna.yaml"
    text = qna.read_text()
    for line in text.splitlines():
        answer = line.strip().removeprefix("answer: ")
        if line.strip().startswith("answer: ") and answer not in held_out:
            qna.write_text(text.replace(line, line.replace(" is ", " becomes ", 1)))
            return f"{answer!r}: 'is' -> 'becomes'"
    sys.exit("no training seed to edit")


def nll_line(leaf: str, record: dict) -> str:
    nll = record["leaves_outcome"][leaf]["reference_nll"]
    funnel = record["leaves_outcome"][leaf]["funnel"]
    ci = nll["ci"]
    return (
        f"| {leaf} | {nll['n']} | {nll['before']:.2f} | {nll['after']:.2f} | "
        f"{nll['delta']:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}] | "
        f"{funnel['requests']} -> {funnel['parsed']} -> {funnel['judged']} -> {funnel['kept']} |"
        f" {record['seconds']:.0f} s |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="kept after the run")
    ap.add_argument("--examples", action="store_true", help="also try each example leaf")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labmake-try-bench-"))
    project = copy_project(workdir / "project")
    run(project, "git", "init", "-q", "-b", "main")
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-q", "-m", "the project")
    (project / "taxonomy" / LEAF).mkdir(parents=True)
    (project / "taxonomy" / LEAF / "qna.yaml").write_text(QNA)
    (project / "taxonomy" / LEAF / "attribution.txt").write_text(ATTRIBUTION)

    figures: dict[str, dict] = {"first": labmake_try(project, "--base", "HEAD")}
    assert figures["first"]["leaves"] == [LEAF], figures["first"]["leaves"]
    edit = edit_a_training_seed(project)
    figures["edit"] = labmake_try(project, "--base", "HEAD")
    figures["no_edit"] = labmake_try(project, "--base", "HEAD")
    examples = {}
    if args.examples:
        for leaf in EXAMPLES:
            folder = "build/try-" + leaf.rsplit("/", 1)[-1]
            examples[leaf] = labmake_try(project, leaf, "--from-base", folder=folder)

    print(f"\nlabmake try, new skill leaf {LEAF} (edit: {edit})")
    print("| try | seconds | target | CPU seconds | load average | jobs run |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, label in (
        ("first", "first"),
        ("edit", "after a one-word edit"),
        ("no_edit", "no edit"),
    ):
        f = figures[name]
        target = f"<= {TARGETS[name]:.0f} s" if name in TARGETS else "0 jobs"
        row = f"| {label} | {f['seconds']:.0f} | {target} | {f['cpu_s']:.0f} | {f['load']} |"
        print(f"{row} {len(f['jobs'])} |")
    print("\njobs of the try after the edit (seconds):")
    for job in figures["edit"]["jobs"]:
        print(f"  {job['rule']} {job['name']}: {job['seconds']}")
    print("\n| leaf | n | NLL before | NLL after | difference [95% CI] | funnel | try |")
    print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
    print(nll_line(LEAF, figures["edit"]))
    for leaf, record in examples.items():
        print(nll_line(leaf, record))
    met = all(figures[k]["seconds"] <= t for k, t in TARGETS.items())
    met = met and not figures["no_edit"]["jobs"]
    print(f"\ntargets {'met' if met else 'NOT met'} (workdir {workdir})")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "examples": examples}, indent=2))


if __name__ == "__main__":
    main()
