"""labmake data show: a leaf's samples, kept and rejected, with the block or filter rule that
rejected each and the judges' scores; the filters; one self-contained, escaped page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from labmake import cli
from labmake.cli.samples import funnel, load_leaf_samples
from labmake.core import artifacts
from labmake.core.config import load

REPO = Path(__file__).resolve().parents[2]
LEAF = "compositional_skills/test/rhymes"
SEEDS = [
    ("Give a word that rhymes with cat.", "Hat rhymes with cat."),
    ("Give a word that rhymes with moon.", "Spoon rhymes with moon."),
    ("Give a word that rhymes with tree.", "Bee rhymes with tree."),
]


def _record(sid: str, q: str, a: str, status: str = "kept", by=None, reason=None, **extra):
    return {
        "leaf": LEAF,
        "kind": "skill",
        "id": sid,
        "status": status,
        "rejected_by": by,
        "reason": reason,
        "pipeline": "freeform",
        "pipeline_version": 1,
        "question": q,
        "answer": a,
        "scores": extra.pop("scores", {"pair_score": 5.0}),
        **extra,
    }


@pytest.fixture()
def build(tmp_path: Path) -> Path:
    """A build folder as the seeds, generate and filter stages leave it, for one leaf."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(REPO / "tests/data/taxonomy", tmp_path / "taxonomy")
    out = tmp_path / "build"
    seeds = {
        "leaf": LEAF,
        "kind": "skill",
        "seed_examples": [{"question": q, "answer": a, "context": None} for q, a in SEEDS],
    }
    artifacts.write_json(out / f"seeds/{LEAF}.json", seeds)
    records = [
        _record("s0", "Give a word that rhymes with dog.", "Log rhymes with dog."),
        _record("s1", *SEEDS[0]),  # the filters find it copies a seed
        _record(
            "s2",
            "<script>alert(1)</script> rhymes with what?",
            "Nothing.",
            "rejected",
            "keep_good_pairs",
            "below_threshold",
            scores={"pair_score": 1.0},
            raw={"generate_answer": "<answer>Nothing.</answer>"},
        ),
        _record("s3", "", "", "rejected", "parse_question", "no_item", scores={}),
    ]
    artifacts.write_jsonl(out / f"generated/{LEAF}.jsonl", records)
    artifacts.write_jsonl(out / f"filtered/{LEAF}.jsonl", [{"id": "s0", "leaf": LEAF}])
    stats = {"leaf": LEAF, "generated": 4, "candidates": 2, "kept": 1}
    artifacts.write_json(out / f"filtered/{LEAF}.stats.json", stats)
    return tmp_path


def _show(build: Path, capsys, *extra: str) -> tuple[int, str]:
    code = cli.main(
        [
            "data",
            "show",
            LEAF,
            "--build-dir",
            str(build / "build"),
            "--params",
            str(build / "params.yaml"),
            *extra,
        ]
    )
    return code, capsys.readouterr().out


def test_every_sample_with_what_rejected_it(build: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out = _show(build, capsys)
    assert code == 0
    assert "funnel: 4 requests -> 3 parsed -> 2 judged -> 1 kept" in out
    for sid in ("s0", "s1", "s2", "s3"):
        assert re.search(rf"\b{sid}\b", out)
    assert "filters: copies_a_seed" in out and "pipeline: keep_good_pairs" in out
    assert "pair_score 1" in out and "teacher wrote" in out
    assert "rejected by pipeline: parse_question" in out


def test_the_judge_check_is_shown(build: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    path = build / f"build/filtered/{LEAF}.stats.json"
    stats = artifacts.read_json(path)
    check = {"auc": 0.4, "pairs": 25, "min_auc": 0.75, "used": False}
    artifacts.write_json(path, {**stats, "judge_checks": {"judge_pair": check}})
    code, out = _show(build, capsys)
    assert code == 0
    assert "judge check: judge_pair: ranked the seeds as written above swapped ones in 40%" in out
    assert "NOT used: its samples pass unjudged" in out


def test_filters_select_what_is_shown(build: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _, kept = _show(build, capsys, "--kept")
    assert "s0" in kept and not re.search(r"\bs[123]\b", kept)
    _, block = _show(build, capsys, "--rejected", "--block", "copies_a_seed")
    assert re.search(r"\bs1\b", block) and not re.search(r"\bs[023]\b", block)
    _, limited = _show(build, capsys, "--limit", "1")
    assert "1 of 4 samples shown" in limited


def test_html_is_one_escaped_self_contained_page(build: Path, capsys):
    page = build / "rhymes.html"
    code, _ = _show(build, capsys, "--html", str(page))
    assert code == 0
    html = page.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
    assert not re.search(r"(src|href)\s*=|https?://|@import|url\(", html)
    assert "copies_a_seed" in html and "keep_good_pairs" in html and "s3" in html
    assert html.count("<tr>") == 2 + 3 + 4  # 2 headers, 3 rejecting blocks or rules, 4 samples


def test_a_try_folder_and_a_missing_leaf(build: Path, capsys):
    code = cli.main(["data", "show", LEAF, "--build-dir", str(build), "--kept"])
    assert code == 0 and "s0" in capsys.readouterr().out  # params.yaml beside build/
    code = cli.main(["data", "show", "compositional_skills/none", "--build-dir", str(build)])
    assert code == 2 and "no generated samples" in capsys.readouterr().err


def test_filter_reasons_replay_the_filter_stage(build: Path):
    cfg = load(build / "params.yaml")
    data = load_leaf_samples(build / "build", LEAF, cfg.filter)
    fates = {s.id: (s.status, s.stage, s.by) for s in data.samples}
    assert fates == {
        "s0": ("kept", "filters", ""),
        "s1": ("rejected", "filters", "copies_a_seed"),
        "s2": ("rejected", "pipeline", "keep_good_pairs"),
        "s3": ("rejected", "pipeline", "parse_question"),
    }
    assert data.notes == []
    records = artifacts.read_jsonl(build / f"build/generated/{LEAF}.jsonl")
    assert funnel(records, {"kept": 1}) == {"requests": 4, "parsed": 3, "judged": 2, "kept": 1}
