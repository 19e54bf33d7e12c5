"""lm-evaluation-harness on the tiny student, offline, with a task shipped with the tests.

Needs the optional extra (labmake[lm-eval]); skipped only when it is not installed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="the optional extra labmake[lm-eval] is not installed")

from labmake.core import artifacts  # noqa: E402
from labmake.core.config import LmEvalConfig  # noqa: E402
from labmake.evaluation import harness  # noqa: E402

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "tests/data/lm_eval"


def test_a_local_task_runs_offline_and_is_deterministic(
    tiny_hf_student: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(REPO)  # the task names its data file relative to the repository
    cfg = LmEvalConfig(tasks=("labmake_tiny",), include_path=str(TASKS))
    out = tmp_path / "base.json"
    harness.run_model("base", tiny_hf_student, cfg, 3, out)
    result = artifacts.read_json(out)
    assert result["model"] == "base" and result["settings"]["tasks"] == ["labmake_tiny"]
    acc = result["tasks"]["labmake_tiny"]["acc,none"]
    assert 0.0 <= acc <= 1.0 and result["n_samples"]["labmake_tiny"] == 4
    again = tmp_path / "again.json"
    harness.run_model("base", tiny_hf_student, cfg, 3, again)
    assert again.read_bytes() == out.read_bytes()


def test_a_task_without_its_data_is_a_clear_error(tiny_hf_student: Path) -> None:
    cfg = LmEvalConfig(tasks=("labmake_missing",), include_path=str(TASKS))
    with pytest.raises(harness.HarnessError, match="labmake_missing.*not on this machine"):
        harness.evaluate(tiny_hf_student, cfg, 3)


@pytest.mark.slow  # indexes the harness's own 14,000-odd tasks: about a minute
def test_an_unknown_task_is_a_clear_error(tiny_hf_student: Path) -> None:
    cfg = LmEvalConfig(tasks=("labmake_no_such_task",), include_path=str(TASKS))
    with pytest.raises(harness.HarnessError, match="unknown lm-eval task"):
        harness.evaluate(tiny_hf_student, cfg, 3)
