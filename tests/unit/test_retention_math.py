"""What the retention numbers are: the coarsened KL, and the knowledge each leaf kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from labmake.core.config import EvaluateConfig
from labmake.evaluation import retention_report
from labmake.training.drift import position_scores, record_scores


def _logsoftmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_kl_is_exact_with_the_whole_vocabulary_and_a_lower_bound_with_top_k():
    rng = np.random.default_rng(0)
    p, q = _logsoftmax(rng.normal(size=(5, 50))), _logsoftmax(rng.normal(size=(5, 50)))
    exact = (np.exp(p) * (p - q)).sum(axis=1)
    full = np.argsort(-p, axis=1)
    kl, _ = position_scores(np.take_along_axis(q, full, 1), q[:, 0], np.take_along_axis(p, full, 1))
    assert np.allclose(kl, exact, atol=1e-9)
    for k in (1, 5, 20):
        top = full[:, :k]
        bound, _ = position_scores(
            np.take_along_axis(q, top, 1), q[:, 0], np.take_along_axis(p, top, 1)
        )
        assert (bound <= exact + 1e-12).all() and (bound >= 0).all()
    same, nll = position_scores(
        np.take_along_axis(p, full, 1), p[:, 3], np.take_along_axis(p, full, 1)
    )
    assert np.allclose(same, 0.0) and np.allclose(nll, -p[:, 3])


def test_record_scores_read_the_rows_of_the_continuation():
    logprobs = _logsoftmax(np.random.default_rng(1).normal(size=(3, 10)))
    record = {
        "ids": [2, 7, 4, 5, 6],  # prompt [2, 7], continuation [4, 5, 6]
        "start": 2,
        "top_ids": np.argsort(-logprobs, axis=1)[:, :10].tolist(),
        "top_logprobs": np.sort(logprobs, axis=1)[:, ::-1].tolist(),
    }
    scores = record_scores(record, logprobs)
    assert scores["kl"] == pytest.approx(0.0, abs=1e-9)
    assert scores["nll"] == pytest.approx(
        -np.mean([logprobs[0, 4], logprobs[1, 5], logprobs[2, 6]])
    )


ITEMS = [
    {"leaf": "knowledge/a", "kind": "knowledge"},
    {"leaf": "knowledge/a", "kind": "knowledge"},
    {"leaf": "knowledge/b", "kind": "knowledge"},
    {"leaf": "knowledge/b", "kind": "knowledge"},
    {"leaf": "skills/c", "kind": "skill"},
]
PHASES = [{"name": "knowledge", "dataset": "knowledge"}, {"name": "skills", "dataset": "skills"}]


def _results(base, mid, final):
    return {
        "base": {"reference_nll": base},
        "phase-knowledge": {"reference_nll": mid},
        "phase-skills": {"reference_nll": final},
        "tuned": {"reference_nll": final},
    }


def test_knowledge_kept_and_the_flag_whatever_the_interval():
    # a: gain 1.0 after knowledge, 0.8 kept (80%); b: gain 1.0, 0.4 kept (40%, flagged)
    results = _results([4, 4, 4, 4, 5], [3, 3, 3, 3, 5], [3.2, 3.2, 3.4, 3.8, 4])
    cfg = EvaluateConfig(bootstrap_resamples=100)
    kept = retention_report.knowledge_kept(ITEMS, results, PHASES, cfg, 1)
    assert set(kept["leaves"]) == {"knowledge/a", "knowledge/b"}  # skills have no such gain
    a, b = kept["leaves"]["knowledge/a"], kept["leaves"]["knowledge/b"]
    assert a["kept"] == pytest.approx(0.8) and not a["flagged"]
    assert b["kept"] == pytest.approx(0.4) and b["flagged"]
    assert b["lost"]["mean"] == pytest.approx(0.6) and b["lost"]["n"] == 2
    assert kept["flagged"] == ["knowledge/b"]
    assert retention_report.knowledge_kept(ITEMS, results, PHASES[:1], cfg, 1) is None
    no_gain = _results([3, 3, 3, 3, 5], [3.5, 3.5, 3, 3, 5], [3, 3, 3, 3, 4])
    a = retention_report.knowledge_kept(ITEMS, no_gain, PHASES, cfg, 1)["leaves"]["knowledge/a"]
    assert a["kept"] is None and not a["flagged"]  # nothing gained, nothing to keep


def _scored(kl_tuned: float):
    def model(kl, nll):
        return {"retention": {"kl": kl, "nll": nll}, "retention_qa": {"trivia": [2.0, 2.5]}}

    return {
        "base": model([0.0, 0.0, 0.0], [3.0, 3.1, 2.9]),
        "tuned": model([kl_tuned] * 3, [3.2, 3.3, 3.1]),
        "gguf-Q8_0": model([kl_tuned + 0.01] * 3, [3.3, 3.3, 3.2]),
    }


def test_retention_section_and_max_retention_loss(tmp_path: Path):
    cfg = EvaluateConfig(bootstrap_resamples=100, max_retention_loss=0.05)
    section = retention_report.retention(_scored(0.02), None, cfg, 3)
    kl = section["general"]["kl"]
    assert (
        kl["models"]["tuned"]["mean"] == pytest.approx(0.02) and kl["models"]["base"]["mean"] == 0
    )
    assert section["general"]["nll"]["delta"]["tuned"]["mean"] == pytest.approx(0.2)
    assert section["qa"]["trivia"]["models"]["tuned"]["n"] == 2
    assert section["prompts"] == 3 and not section["exceeded"]
    report = {"retention": section}
    retention_report.log_and_check(report, tmp_path / "r.html", {"tracking": "none"})
    over = retention_report.retention(_scored(0.2), None, cfg, 3)
    assert over["exceeded"]
    with pytest.raises(retention_report.RetentionError, match="max_retention_loss"):
        retention_report.log_and_check(
            {"retention": over}, tmp_path / "r.html", {"tracking": "none"}
        )
    # Same inputs, same numbers: the intervals are seeded.
    assert retention_report.retention(_scored(0.2), None, cfg, 3) == over


def test_the_page_shows_what_each_leaf_kept_and_flags_forgetting():
    from labmake.evaluation.report import _templates

    results = _results([4, 4, 4, 4, 5], [3, 3, 3, 3, 5], [3.2, 3.2, 3.4, 3.8, 4])
    cfg = EvaluateConfig(bootstrap_resamples=100, max_retention_loss=0.05)
    report = {
        "knowledge_kept": retention_report.knowledge_kept(ITEMS, results, PHASES, cfg, 1),
        "retention": retention_report.retention(_scored(0.2), None, cfg, 3),
    }
    html = (
        _templates()
        .get_template("cost.html.j2")
        .render(report=report, plots={"retention": None}, confidence=95, tuned="tuned")
    )
    assert "Knowledge kept from the knowledge phase" in html and ">80%<" in html
    assert "<strong>Forgetting.</strong>" in html and "<code>knowledge/b</code>" in html
    assert "KL to the base" in html and "max_retention_loss" in html  # exceeded: a banner
    assert "Q&amp;A <code>trivia</code>" in html
