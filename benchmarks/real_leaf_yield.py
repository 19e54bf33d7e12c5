"""Yield on real leaves: what the shipped pipelines keep from skill leaves nobody here wrote.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/real_leaf_yield.py [--leaves N] [--json OUT]
    OMP_WAIT_POLICY=PASSIVE python benchmarks/real_leaf_yield.py --taxonomy taxonomy

The second form measures a taxonomy's own skill leaves (the example's, say) the same way.

Draws a seeded sample (``--seed``, default 1234) of ``--leaves`` (default 20) valid version-3
skill leaves, freeform and grounded, from the InstructLab conformance corpus
(``../shared/conformance/taxonomy``: its ``expected.jsonl`` says which files the reference
validator accepts; leaves labmake's loader refuses are left out of the pool and counted). Each
leaf runs the generate stage's pipeline and the filter stage's rules with the shipped
params.yaml and the embedded teacher (llama-cpp), as a build would, and the benchmark prints per
leaf:
  first-step: requests of the pipeline's first teacher block (every round, when it has rounds);
  parsed:     samples that got through every parse block (whatever the judges said after);
  judged:     samples the pipeline kept (judges and its own rules passed);
  kept:       samples the filter stage accepted;
  requests:   every teacher request the leaf's generation sent (judges included);
  judge:      the pair judge's check on the leaf's seeds (labmake.sdg.judge_check): the share of
              (seed as written, seed with another's answer) pairs it ranked right, and whether
              it then judged the leaf's samples ("used") or not ("off");
and overall: leaves yielding >= 5 kept samples, and kept samples per 100 teacher requests.
Targets: every sampled leaf >= 5; kept per 100 requests at least twice the example taxonomy's
figure before this benchmark existed (30 kept of 327 requests: about 9).

Requests are counted whether the request cache answers them or the teacher does, so a re-run
prints the same figures (and is quick); ``--cache`` picks the cache folder. A copy of an older
labmake runs it too (the benchmark only needs ``generation.generate_leaf`` and
``filters.filter_leaf``): check out an earlier commit beside this one to measure a "before".
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "conformance" / "taxonomy"
FLOOR = 5  # kept samples a leaf must yield


def pool(corpus: Path) -> list[dict[str, Any]]:
    """Valid version-3 skill cases of the corpus, by case id (the order the seed draws from)."""
    rows = [json.loads(line) for line in (corpus / "expected.jsonl").read_text().splitlines()]
    cases = [r for r in rows if r["kind"] == "skill" and r["version"] == 3 and r["valid"]]
    return sorted(cases, key=lambda r: r["id"])


def loadable(corpus: Path, case: dict[str, Any]) -> tuple[Path, str] | None:
    """(taxonomy root, leaf) when labmake's own loader accepts the case, else None."""
    from labmake.taxonomy.findings import TaxonomyError
    from labmake.taxonomy.leaf import load_leaf

    root = corpus / "cases" / case["id"]
    leaf = str(Path(case["path"]).parent)
    try:
        load_leaf(root, leaf)
    except (TaxonomyError, ValueError):
        return None
    return root, leaf


def taxonomy_skills(root: Path) -> list[tuple[dict[str, Any], tuple[Path, str]]]:
    """A taxonomy's skill leaves, as (case, (root, leaf)) like the corpus sample's."""
    from labmake.taxonomy.scan import find_leaves

    leaves = [leaf for leaf in find_leaves(root) if not leaf.startswith("knowledge/")]
    return [({"id": root.name}, (root, leaf)) for leaf in sorted(leaves)]


class Counting:
    """Wraps generation's complete_all: every request a leaf's pipeline sends, cache hits too."""

    def __init__(self, generation: Any) -> None:
        self.module = generation
        self.inner = generation.complete_all
        self.requests = 0
        self.by_label: dict[str, int] = {}

    def __enter__(self) -> Counting:
        def counted(teacher: Any, requests: Any, label: str, cache: Any = None) -> Any:
            self.requests += len(requests)
            block = label.rsplit(": ", 1)[-1]
            self.by_label[block] = self.by_label.get(block, 0) + len(requests)
            return self.inner(teacher, requests, label, cache=cache)

        self.module.complete_all = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.complete_all = self.inner


def generate(seeds: dict[str, Any], cfg: Any, teacher: Any, cache: Any) -> list[dict[str, Any]]:
    """generate_leaf, with the filter section where this labmake's version takes it."""
    from labmake.sdg import generation

    extra = {}
    if "accept" in inspect.signature(generation.generate_leaf).parameters:
        extra["accept"] = cfg.filter
    return generation.generate_leaf(
        seeds, cfg.generate, cfg.teacher, cfg.seed, teacher, cache, **extra
    )


def measure(
    root: Path, leaf: str, cfg: Any, teacher: Any, cache: Any, out: Path | None = None
) -> dict[str, Any]:
    from labmake.sdg import filters, generation
    from labmake.taxonomy.leaf import load_leaf
    from labmake.taxonomy.seeds import leaf_record

    seeds = leaf_record(load_leaf(root, leaf), cfg.seeds, None)
    pipeline = generation.pipeline_of(seeds, cfg.generate)
    types = {block.name: block.type for block in pipeline.blocks}
    first = next(b.name for b in pipeline.blocks if b.type in ("generate", "judge"))
    start = time.monotonic()
    with Counting(generation) as counting:
        records = generate(seeds, cfg, teacher, cache)
    kept, stats = filters.filter_leaf(seeds, records, cfg.filter)
    if out is not None:  # everything behind the row, to read why a leaf yields little
        name = f"{root.name}-{leaf.replace('/', '_')}"
        (out / f"{name}.generated.json").write_text(json.dumps(records, indent=1) + "\n")
        (out / f"{name}.stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    not_parsed = ("generate", "parse")
    return {
        "leaf": leaf,
        "case": root.name,
        "pipeline": pipeline.name,
        "first_step": counting.by_label.get(first, 0),
        "parsed": sum(
            r["status"] == "kept" or types.get(r["rejected_by"]) not in not_parsed for r in records
        ),
        "judged": sum(r["status"] == "kept" for r in records),
        "kept": len(kept),
        "requests": counting.requests,
        # The pair judge's check on the leaf's seeds (labmake.sdg.judge_check), if it has one.
        "judge_check": stats.get("judge_checks", {}).get("judge_pair"),
        "seconds": round(time.monotonic() - start, 1),
    }


def _judge_column(check: dict[str, Any] | None) -> str:
    """The pair judge's seed check: "0.40 off" (its AUC, judged nothing), "0.90 used", or "-"."""
    if not check:
        return "-"
    auc = "n/a" if check["auc"] is None else f"{check['auc']:.2f}"
    return f"{auc} {'used' if check['used'] else 'off'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=20, help="leaves to sample (default 20)")
    parser.add_argument("--seed", type=int, default=1234, help="the sample's seed")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--cache", type=Path, default=None, help="default: the build's cache")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--out", type=Path, default=None, help="write each leaf's records here")
    parser.add_argument(
        "--case", action="append", default=[], help="only these drawn case ids (to look closer)"
    )
    parser.add_argument(
        "--taxonomy",
        type=Path,
        default=None,
        help="measure this taxonomy's skill leaves instead of a sample of the corpus",
    )
    args = parser.parse_args()

    from labmake.core import config, paths
    from labmake.teacher.cache import RequestCache
    from labmake.teacher.registry import open_teacher

    cfg = config.load(args.params)
    if args.taxonomy is not None:
        drawn = taxonomy_skills(args.taxonomy)
        print(f"{args.taxonomy}: {len(drawn)} skill leaves")
    else:
        cases = pool(args.corpus)
        usable = [(c, found) for c in cases if (found := loadable(args.corpus, c)) is not None]
        drawn = random.Random(args.seed).sample(usable, min(args.leaves, len(usable)))
        if args.case:
            drawn = [(case, found) for case, found in drawn if case["id"] in args.case]
        print(
            f"pool: {len(cases)} valid v3 skill cases, {len(usable)} that labmake loads; "
            f"drawn {len(drawn)} (seed {args.seed})"
        )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cache = RequestCache(args.cache or Path(paths.TEACHER_CACHE))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    teacher = open_teacher(cfg.teacher)
    rows = []
    header = (
        f"{'leaf':<72} {'pipe':<9} {'first':>5} {'parsed':>6} {'judged':>6} {'kept':>4} {'req':>4}"
        f" {'judge':>10}"
    )
    print(header)
    try:
        for case, (root, leaf) in drawn:
            row = measure(root, leaf, cfg, teacher, cache, args.out)
            rows.append(row)
            name = f"{case['id'][:6]}:{leaf.removeprefix('compositional_skills/')}"
            print(
                f"{name[:72]:<72} {row['pipeline']:<9} {row['first_step']:>5} "
                f"{row['parsed']:>6} {row['judged']:>6} {row['kept']:>4} {row['requests']:>4} "
                f"{_judge_column(row['judge_check']):>10}",
                flush=True,
            )
    finally:
        teacher.close()
    kept = sum(r["kept"] for r in rows)
    requests = sum(r["requests"] for r in rows)
    good = sum(r["kept"] >= FLOOR for r in rows)
    rate = 100 * kept / requests if requests else 0.0
    print(f"leaves yielding >= {FLOOR} kept: {good} of {len(rows)} (target: all)")
    print(f"kept per 100 teacher requests: {rate:.1f} ({kept} of {requests}; target >= 18)")
    print(f"teacher time: {sum(r['seconds'] for r in rows):.0f} s")
    if args.json:
        doc = {"rows": rows, "kept": kept, "requests": requests, "leaves_ok": good}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
