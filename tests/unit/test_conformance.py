"""Agreement with InstructLab's validator on real qna.yaml files (the conformance corpus).

The corpus (1,891 files from the history of instructlab/taxonomy, each with the verdicts of
instructlab-schema 0.4.2 + yamllint) lives beside the repository in
../shared/conformance/taxonomy. Here a deterministic sample of 300 runs through the corpus's
own runner with the installed `labmake` command, in both modes; CI runs all of it:

    python3 ../shared/conformance/taxonomy/check_conformance.py \\
        --corpus ../shared/conformance/taxonomy -j 2 -- .venv/bin/labmake validate
    python3 ../shared/conformance/taxonomy/check_conformance.py \\
        --corpus ../shared/conformance/taxonomy -j 2 --against ilab_valid \\
        -- .venv/bin/labmake validate --ilab-strict

The full corpus also runs in-process below (marked slow: about a minute).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CANDIDATES = (
    REPO.parent / "shared" / "conformance" / "taxonomy",
    Path("/work/shared/conformance/taxonomy"),
)
CORPUS = next((c for c in CANDIDATES if (c / "expected.jsonl").is_file()), None)

needs_corpus = pytest.mark.skipif(
    CORPUS is None,
    reason="conformance corpus not found at ../shared/conformance/taxonomy (next to the repo)",
)
SAMPLE = 300


def labmake() -> list[str]:
    script = Path(sys.executable).with_name("labmake")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labmake.cli"]


def conformance(*options: str, command: list[str]) -> subprocess.CompletedProcess[str]:
    assert CORPUS is not None
    return subprocess.run(
        [
            sys.executable,
            str(CORPUS / "check_conformance.py"),
            "--corpus",
            str(CORPUS),
            "--sample",
            str(SAMPLE),
            "-j",
            "2",
            *options,
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=1200,
    )


@needs_corpus
def test_sampled_conformance_default_mode() -> None:
    result = conformance(command=[*labmake(), "validate"])
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"conformance: {SAMPLE}/{SAMPLE} agree (100.0%)", result.stdout[-3000:]
    assert result.returncode == 0


@needs_corpus
def test_sampled_conformance_ilab_strict() -> None:
    result = conformance(
        "--against", "ilab_valid", command=[*labmake(), "validate", "--ilab-strict"]
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"conformance: {SAMPLE}/{SAMPLE} agree (100.0%)", result.stdout[-3000:]
    assert result.returncode == 0


@needs_corpus
@pytest.mark.slow
@pytest.mark.parametrize(("ilab_strict", "field"), [(False, "valid"), (True, "ilab_valid")])
def test_full_corpus_in_process(ilab_strict: bool, field: str) -> None:
    from labmake.taxonomy.check import CheckMode, check_leaf
    from labmake.taxonomy.scan import scan

    assert CORPUS is not None
    cases = [json.loads(line) for line in (CORPUS / "expected.jsonl").read_text().splitlines()]
    wrong = []
    for case in cases:
        root = CORPUS / "cases" / case["id"]
        leaves, problems = scan(root, hidden=True)
        reports = [check_leaf(root, leaf, CheckMode(ilab_strict=ilab_strict)) for leaf in leaves]
        assert not any(f.source == "internal" for r in reports for f in r.findings), case["id"]
        valid = (
            bool(leaves)
            and all(r.valid for r in reports)
            and not any(p.level == "error" for p in problems)
        )
        if valid != case[field]:
            wrong.append(case["id"])
    assert wrong == [], f"{len(wrong)} of {len(cases)} disagree: {wrong[:20]}"
