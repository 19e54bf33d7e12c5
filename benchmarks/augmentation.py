"""Document augmentation (generate.knowledge.augment) on the example knowledge leaves, with the
embedded model: samples kept, and the tried model's multiple-choice accuracy and held-out NLL,
without and with it.

    python benchmarks/augmentation.py [--workdir DIR] [--kinds summary,key_facts,rephrase]
                                      [--leaves LEAF,...] [--json FILE]

A frozen copy of the project (as benchmarks/try_leaf.py makes it); per knowledge leaf of the
example taxonomy, `labmake try LEAF --from-base` twice, each in a try folder of its own: with
augmentation off, then with the kinds given (per_chunk 1). Everything else is params.yaml's (the
try's budget included). Both tries of a leaf share the teacher cache, so the requests over the
document's own chunks -- the same ones with augmentation on -- are answered once. The held-out
items (the leaf's held-out seeds: try.eval_generated_per_leaf is 0) and the multiple-choice
questions (written from the document's chunks, never from rewrites) are the same in both tries:
the figures compare like with like. A try whose filters keep nothing stops there (a try's
filter.on_empty is fail): its row says so, with the samples kept (0) and no scores.

The embedded teacher decodes in fixed batches of teacher.n_parallel requests, and an answer
depends on its batch-mates: the rows the rewrites add move later requests of a block into other
batches, so the samples from the document's own chunks differ between the two tries too (the
first batch's do not). "from rewrites" counts the accepted samples augmentation itself added.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from labmake.core import artifacts

sys.path.insert(0, str(Path(__file__).resolve().parent))
import try_leaf as bench  # noqa: E402  (benchmarks/try_leaf.py: the project copy, its runner)

LEAVES = ("knowledge/science/water_cycle", "knowledge/history/printing_press")
KINDS = ("summary", "key_facts", "rephrase")


def write_params(project: Path, name: str, kinds: tuple[str, ...]) -> Path:
    """params.yaml of the project copy with generate.knowledge.augment set to ``kinds``."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    knowledge = params["generate"].setdefault("knowledge", {})
    knowledge["augment"] = {"kinds": list(kinds), "per_chunk": 1}
    path = project / f"params-{name}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a file the try may not have got to write (a stopped try)."""
    return artifacts.read_jsonl(path) if path.is_file() else []


def one_try(project: Path, leaf: str, params: Path, folder: str) -> dict[str, Any]:
    """One `labmake try` of ``leaf``: samples kept, rewrites kept, scores (when it got that far)."""
    started = time.monotonic()
    result = bench.run(
        project,
        str(bench.BIN / "labmake"),
        "try",
        leaf,
        "--from-base",
        "--params",
        str(params),
        "--dir",
        folder,
        check=False,
    )
    build = project / folder / "build"
    rewrites = _jsonl(build / "generated" / f"{leaf}.augmented.jsonl")
    # The filter stage's accepted samples (a try stopped by an empty leaf has none).
    accepted = _jsonl(build / "filtered" / f"{leaf}.jsonl")
    figures: dict[str, Any] = {
        "seconds": round(time.monotonic() - started, 1),
        "ok": result.returncode == 0,
        "kept": len(accepted),
        "from_rewrites": sum("chunk_source" in r for r in accepted),
        "rewrites": len(rewrites),
        "rewrites_kept": sum(r["status"] == "kept" for r in rewrites),
        "samples": len(_jsonl(build / "generated" / f"{leaf}.jsonl")),
    }
    if result.returncode == 0:
        outcome = json.loads((project / folder / "last-try.json").read_text())
        figures |= {k: outcome["leaves_outcome"][leaf][k] for k in ("reference_nll", "funnel")}
        figures["multiple_choice"] = outcome["leaves_outcome"][leaf].get("multiple_choice")
    else:
        figures["error"] = [ln for ln in result.stderr.splitlines() if ln.strip()][-6:]
    print(f"{leaf} ({folder}): {json.dumps(figures)}", flush=True)
    return figures


def _score(figures: dict[str, Any], key: str, side: str) -> str:
    block = figures.get(key)
    return f"{block[side]:.2f}" if block else "-"


def print_table(results: dict[str, dict[str, dict[str, Any]]], kinds: tuple[str, ...]) -> None:
    print(f"\naugmentation: kinds {list(kinds)}, per_chunk 1; labmake try --from-base per leaf")
    print(
        "| leaf | kept off | kept on (of them from rewrites) | rewrites kept | MC base | "
        "MC off | MC on | MC questions | NLL base | NLL off | NLL on | try off | try on |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    for leaf, runs in results.items():
        off, on = runs["off"], runs["on"]
        base = off if off.get("reference_nll") else on
        mc = (off.get("multiple_choice") or on.get("multiple_choice") or {}).get("n", "-")
        print(
            f"| {leaf} | {off['kept']} | {on['kept']} ({on['from_rewrites']}) | "
            f"{on['rewrites_kept']} of {on['rewrites']} | "
            f"{_score(base, 'multiple_choice', 'before')} | "
            f"{_score(off, 'multiple_choice', 'after')} | {_score(on, 'multiple_choice', 'after')} "
            f"| {mc} | {_score(base, 'reference_nll', 'before')} | "
            f"{_score(off, 'reference_nll', 'after')} | {_score(on, 'reference_nll', 'after')} | "
            f"{off['seconds']:.0f} s{'' if off['ok'] else ' (stopped)'} | "
            f"{on['seconds']:.0f} s{'' if on['ok'] else ' (stopped)'} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="kept after the run")
    ap.add_argument("--kinds", default=",".join(KINDS), help="the rewrites, comma-separated")
    ap.add_argument("--leaves", default=",".join(LEAVES), help="knowledge leaves to try")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument(
        "--teacher-cache", type=Path, default=None, help="an earlier run's build/cache/teacher"
    )
    args = ap.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labmake-augment-bench-"))
    project = bench.copy_project(workdir / "project")
    if args.teacher_cache:  # what an earlier run asked is answered the same, at once
        shutil.copytree(args.teacher_cache, project / "build" / "cache" / "teacher")
    params = {"off": write_params(project, "off", ()), "on": write_params(project, "on", kinds)}
    print(f"workdir {workdir}; load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for leaf in args.leaves.split(","):
        name = leaf.rsplit("/", 1)[-1]
        results[leaf] = {
            side: one_try(project, leaf, params[side], f"build/try-{name}-{side}")
            for side in ("off", "on")
        }
    print_table(results, kinds)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
