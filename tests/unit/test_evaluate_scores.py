"""labmake.evaluation without models: scores, multiple choice, bootstrap, judge parsing, summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from labmake.core.config import EvaluateConfig, TeacherConfig
from labmake.evaluation.judge import judge_answers, judge_prompt, parse_score
from labmake.evaluation.models import model_inputs, model_names
from labmake.evaluation.multiple_choice import Choice, read_choices
from labmake.evaluation.results import load_results
from labmake.evaluation.scores import rouge_l, token_f1
from labmake.evaluation.statistics import bootstrap_ci
from labmake.evaluation.summary import summarize
from labmake.teacher.protocol import Request
from labmake.testing.fake_teacher import FakeTeacher

K1, K2, S = "knowledge/a", "knowledge/b", "skills/c"


def item(leaf: str, question: str, answer: str, kind: str = "knowledge") -> dict:
    return {
        "leaf": leaf,
        "kind": kind,
        "question": question,
        "answer": answer,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


ITEMS = [
    item(K1, "What colour is the lamp?", "The lamp is red."),
    item(K1, "How tall is the tower?", "The tower is forty metres tall."),
    item(K2, "Who built the bridge?", "Engineers from the town built the bridge."),
    item(S, "Rhyme with cat.", "Hat rhymes with cat.", kind="skill"),
]
CFG = EvaluateConfig(bootstrap_resamples=400)


def test_token_f1_and_rouge_l():
    assert token_f1("the cat sat", "the cat sat") == 1.0
    assert token_f1("", "x") == 0.0
    assert token_f1("a cat", "the cat sat") == pytest.approx(0.4)
    # ROUGE-L rewards order, token F1 does not.
    assert rouge_l("sat cat the", "the cat sat") < token_f1("sat cat the", "the cat sat")
    assert rouge_l("The cat sat.", "the cat sat") == 1.0


def test_choices_are_read_from_the_generated_file(tmp_path: Path):
    path = tmp_path / "multiple_choice.jsonl"
    path.write_text(
        '{"leaf": "knowledge/a", "question": "Which colour?", "options": ["Blue", "Red"], '
        '"correct": 1, "id": "c0.s0"}\n'
    )
    assert read_choices(path) == [Choice("knowledge/a", "Which colour?", ("Blue", "Red"), 1)]


def test_bootstrap_interval():
    ci = bootstrap_ci([1.0, 2.0, 3.0, 4.0], resamples=2000, confidence=0.95, seed=3)
    assert ci is not None and 1.0 <= ci[0] < 2.5 < ci[1] <= 4.0
    assert ci == bootstrap_ci([1.0, 2.0, 3.0, 4.0], resamples=2000, confidence=0.95, seed=3)
    narrow = bootstrap_ci([1.0, 2.0, 3.0, 4.0], resamples=2000, confidence=0.5, seed=3)
    assert ci[0] <= narrow[0] <= narrow[1] <= ci[1]
    assert bootstrap_ci([], resamples=10, confidence=0.9, seed=1) is None
    assert bootstrap_ci([2.0, 2.0], resamples=10, confidence=0.9, seed=1) == [2.0, 2.0]


@pytest.mark.parametrize(
    ("reply", "grade"),
    [
        (" 7", 7),
        ("10\n", 10),
        (" 8/10, mostly right", 8),
        ("Score: 9", 9),
        ("9 out of 10", 9),
        ("The answer is good, 9", None),
        ("11", None),
        ("0", None),
        ("7.5", None),
        ("", None),
        ("  \n 7", 7),  # leading blank lines are not prose
    ],
)
def test_parse_score(reply, grade):
    assert parse_score(reply) == grade


def test_judge_prompt_and_fake_judge():
    prompt = judge_prompt("Who built it?", "Engineers built the bridge.", "Engineers\nbuilt it")
    assert prompt.endswith("Answer: Engineers built it\nScore:")  # one line per field
    teacher = FakeTeacher(TeacherConfig())
    good = teacher.complete(Request(prompt, 1, 12, ("\n",)))
    assert 1 <= parse_score(good.text) <= 10
    empty = judge_prompt("Who built it?", "Engineers built the bridge.", "")
    assert parse_score(teacher.complete(Request(empty, 1, 12)).text) is None


def test_judge_answers_counts_unparseable_as_missing():
    grades, replies, identity = judge_answers(
        TeacherConfig(backend="fake-for-tests"),
        ITEMS[:2],
        ["The lamp is red.", ""],
        seed=1,
    )
    assert grades[0] == 10 and grades[1] is None
    assert identity == "fake-for-tests:v1" and len(replies) == 2


def results(base_nll, tuned_nll, base_mc, tuned_mc, judge=None) -> dict:
    # Multiple-choice questions: two of leaf K1, one of K2 (written from their documents).
    def mc(correct):
        return [
            {
                "leaf": ITEMS[i]["leaf"],
                "question": f"Generated question {i}?",
                "options": ["a", "b"],
                "answer": 0,
                "option_nll": [1.0, 2.0],
                "chosen": 0,
            }
            | {"correct": c}
            for i, c in correct
        ]

    n = len(ITEMS)
    base = {
        "model": "base",
        "reference_nll": base_nll,
        "multiple_choice": mc(base_mc),
        "answers": ["x"] * n,
        "token_f1": [0.1] * n,
        "rouge_l": [0.1] * n,
    }
    tuned = {"model": "tuned", "reference_nll": tuned_nll, "multiple_choice": mc(tuned_mc)}
    gguf = {
        "model": "gguf-Q8_0",
        "answers": [i["answer"] for i in ITEMS],
        "token_f1": [1.0] * n,
        "rouge_l": [1.0] * n,
        "gguf": {"file": "model.Q8_0.gguf", "bytes": 10},
        "timing": {"tokens_per_s": 12.5, "completion_tokens": 8, "seconds": 0.64},
    }
    if judge:
        base["judge"], gguf["judge"] = judge
        base["judge_identity"] = gguf["judge_identity"] = "fake-for-tests:v1"
    return {"base": base, "tuned": tuned, "gguf-Q8_0": gguf}


def test_summary_means_deltas_and_intervals():
    res = results(
        [2.0, 4.0, 3.0, 5.0],
        [1.0, 3.0, 3.5, 4.0],
        [(0, False), (1, False), (2, True)],
        [(0, True), (1, True), (2, True)],
        judge=([1, 2, None, 1], [9, None, 8, 10]),
    )
    report = summarize(ITEMS, res, CFG, seed=5)
    a = report["leaves"][K1]["reference_nll"]
    assert a["models"]["base"]["mean"] == 3.0 and a["models"]["tuned"]["mean"] == 2.0
    assert a["delta"]["tuned"]["mean"] == -1.0 and a["delta"]["tuned"]["ci"] == [-1.0, -1.0]
    overall = report["overall"]["reference_nll"]
    assert overall["delta"]["tuned"]["mean"] == pytest.approx(-0.625)
    lo, hi = overall["delta"]["tuned"]["ci"]
    assert lo <= -0.625 <= hi
    mc = report["overall"]["multiple_choice"]
    assert mc["models"]["base"]["mean"] == pytest.approx(1 / 3)
    assert mc["models"]["tuned"]["mean"] == 1.0
    assert report["overall"]["n_multiple_choice"] == 3
    assert "multiple_choice" not in report["leaves"][S]  # skills have no MC questions
    f1 = report["overall"]["token_f1"]
    assert f1["delta"]["gguf-Q8_0"]["mean"] == pytest.approx(0.9)
    judge = report["overall"]["judge"]
    assert judge["models"]["base"]["missing"] == 1 and judge["models"]["gguf-Q8_0"]["missing"] == 1
    assert judge["delta"]["gguf-Q8_0"]["n"] == 2  # only items both models have a grade for
    assert report["settings"]["judge"] == "fake-for-tests:v1"
    # K2 got worse on NLL but with one item the interval is a point: a regression.
    assert report["regressions"] == [
        {"leaf": K2, "metric": "reference_nll", "delta": 0.5, "ci": [0.5, 0.5]}
    ]
    assert report["improved_leaves"] == [K1, S]
    assert report["leaves"][K1]["n_multiple_choice"] == 2
    assert report["leaves"][K1]["multiple_choice"]["models"]["base"]["mean"] == 0.0
    assert report["leaves"][K2]["multiple_choice"]["models"]["base"]["mean"] == 1.0
    assert report["multiple_choice"][0] == {
        "leaf": K1,
        "question": "Generated question 0?",
        "options": ["a", "b"],
        "correct": 0,
        "chosen": {"base": 0, "tuned": 0},
    }
    assert report["samples"][0]["answers"] == {"base": "x", "gguf-Q8_0": ITEMS[0]["answer"]}
    assert "timing" not in str(report)  # timings never reach report.json
    assert summarize(ITEMS, res, CFG, seed=5) == report  # deterministic


def test_models_must_have_answered_the_same_multiple_choice_questions():
    res = results([1.0] * 4, [1.0] * 4, [(0, True)], [(0, True)])
    res["tuned"]["multiple_choice"][0]["options"] = ["b", "a"]
    with pytest.raises(ValueError, match="different multiple-choice questions"):
        summarize(ITEMS, res, CFG, seed=5)


def test_no_regression_when_the_interval_straddles_zero():
    res = results(
        [2.0, 4.0, 3.0, 5.0],
        [3.0, 3.0, 2.0, 4.0],  # K1: +1 and -1
        [(0, True), (1, True), (2, True)],
        [(0, True), (1, False), (2, True)],  # K1 MC: 1.0 -> 0.5, interval includes 0
    )
    report = summarize(ITEMS, res, CFG, seed=5)
    ci = report["leaves"][K1]["reference_nll"]["delta"]["tuned"]["ci"]
    assert ci[0] < 0 < ci[1]
    assert not [r for r in report["regressions"] if r["leaf"] in (K1, "overall")]


def test_load_results_refuses_scores_of_another_eval_set(tmp_path):
    from labmake.core import artifacts

    eval_path = tmp_path / "eval.jsonl"
    artifacts.write_jsonl(eval_path, ITEMS)
    good = tmp_path / "base.json"
    artifacts.write_json(good, {"model": "base", "items_sha256": artifacts.sha256_file(eval_path)})
    assert set(load_results([good], eval_path)) == {"base"}
    stale = tmp_path / "tuned.json"
    artifacts.write_json(stale, {"model": "tuned", "items_sha256": "0" * 64})
    with pytest.raises(ValueError, match="another version"):
        load_results([good, stale], eval_path)


def test_model_names_and_inputs():
    names = model_names(["knowledge", "skills"], ["Q4_K_M", "F16"])
    assert names == [
        "base",
        "phase-knowledge",
        "phase-skills",
        "tuned",
        "gguf-F16",
        "gguf-Q4_K_M",
    ]
    inputs = model_inputs("phase-skills", ["knowledge", "skills"], None)
    assert inputs == {
        "hf": "build/base",
        "phases": ["build/checkpoints/knowledge", "build/checkpoints/skills"],
        "mc": "build/data/multiple_choice.jsonl",
    }
    assert model_inputs("base", ["knowledge"], "s.gguf") == {
        "hf": "build/base",
        "mc": "build/data/multiple_choice.jsonl",
        "gguf": "s.gguf",
    }
    assert model_inputs("gguf-Q8_0", [], None) == {"gguf": "build/model/model.Q8_0.gguf"}
    with pytest.raises(ValueError, match="unknown model"):
        model_inputs("phase-nope", ["knowledge"], None)


def test_judge_is_a_teacher_section_or_null():
    import yaml

    from labmake.core.config import ConfigError, validate

    raw = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    assert validate(raw).evaluate.judge is None  # off by default
    raw["evaluate"]["judge"] = {"backend": "fake-for-tests", "temperature": 0}
    judge = validate(raw).evaluate.judge
    assert isinstance(judge, TeacherConfig) and judge.temperature == 0.0
    raw["evaluate"]["judge"] = {"backend": "fake-for-tests", "temprature": 0}
    with pytest.raises(ConfigError, match="temprature"):
        validate(raw)
