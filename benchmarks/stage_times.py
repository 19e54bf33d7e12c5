"""Print the wall time of each stage of the last build, from Snakemake's benchmark files.

    python benchmarks/stage_times.py [build/benchmarks]

Each rule writes build/benchmarks/{rule}/{name}.tsv (Snakemake's `benchmark:`); this sums the
jobs of each rule. Stages that ran in parallel overlap, so the sum exceeds the wall time.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from labmake.evaluation.build_facts import STAGES


def folder_seconds(folder: Path) -> dict[str, dict[str, float]]:
    """Per benchmark folder (a rule's): its jobs (files) and the sum of their wall seconds
    (column ``s``, every row of a file)."""
    folders: dict[str, dict[str, float]] = {}
    for tsv in sorted(folder.rglob("*.tsv")):
        entry = folders.setdefault(tsv.relative_to(folder).parts[0], {"jobs": 0, "seconds": 0.0})
        with open(tsv, newline="", encoding="utf-8") as fh:
            entry["seconds"] += sum(float(row["s"]) for row in csv.DictReader(fh, delimiter="\t"))
        entry["jobs"] += 1
    return folders


def main(folder: Path) -> int:
    found = folder_seconds(folder)
    seconds = {rule: entry["seconds"] for rule, entry in found.items()}
    jobs = {rule: int(entry["jobs"]) for rule, entry in found.items()}
    if not seconds:
        print(f"{folder}: no benchmark files; run a build first", file=sys.stderr)
        return 1
    print("| stage | jobs | seconds |\n| --- | ---: | ---: |")
    for rule in sorted(seconds, key=lambda r: STAGES.index(r) if r in STAGES else len(STAGES)):
        print(f"| {rule} | {jobs[rule]} | {seconds[rule]:.0f} |")
    print(f"| **sum** | {sum(jobs.values())} | {sum(seconds.values()):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "build/benchmarks")))
