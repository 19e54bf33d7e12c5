import math

import pytest

from labmake.evaluation.multiple_choice import Choice
from labmake.evaluation.run import evaluate_model
from labmake.evaluation.scores import conversation_nll, reference_nll

pytestmark = pytest.mark.model

ITEMS = [
    {
        "leaf": "a",
        "answer": "Hat rhymes with cat.",
        "messages": [
            {"role": "user", "content": "Give a word that rhymes with cat."},
            {"role": "assistant", "content": "Hat rhymes with cat."},
        ],
    },
    {
        "leaf": "b",
        "answer": "Log rhymes with dog.",
        "messages": [
            {"role": "user", "content": "Give a word that rhymes with dog."},
            {"role": "assistant", "content": "Log rhymes with dog."},
        ],
    },
]


def test_reference_nll_matches_the_models_own_loss(tiny_hf_student):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from labmake.training.data import encode

    nll = reference_nll(tiny_hf_student, ITEMS)
    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_student)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_student, dtype=torch.float32).eval()
    for item, value in zip(ITEMS, nll, strict=True):
        sample = encode(tokenizer, item["messages"])
        with torch.no_grad():
            expected = model(
                input_ids=torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels])
            ).loss
        assert value == pytest.approx(float(expected), rel=1e-4)
        assert math.log(400) < value < math.log(700)  # a random model: about uniform over 512


def test_one_model_scores_likelihoods_answers_and_judge(tiny_hf_student, tiny_student_gguf):
    from labmake.core.config import EvaluateConfig, TeacherConfig

    items = [
        {**ITEMS[0], "kind": "knowledge", "question": ITEMS[0]["messages"][0]["content"]},
        {**ITEMS[1], "kind": "knowledge", "question": ITEMS[1]["messages"][0]["content"]},
    ]
    cfg = EvaluateConfig(
        max_new_tokens=6, n_threads=1, judge=TeacherConfig(backend="fake-for-tests")
    )
    # Generated knowledge multiple choice (labmake.sdg.multiple_choice writes these).
    choices = [
        Choice("k", "Which word rhymes with cat?", ("Dog", "Hat", "Sun"), 1),
        Choice("k", "Which word rhymes with dog?", ("Log", "Cup"), 0),
    ]
    result = evaluate_model(
        "base", items, cfg, 3, hf_dir=tiny_hf_student, gguf=tiny_student_gguf, choices=choices
    )
    assert result["reference_nll"] == [round(v, 6) for v in reference_nll(tiny_hf_student, items)]
    # every generated question answered: each option's NLL as the answer to the question alone
    assert [q["question"] for q in result["multiple_choice"]] == [c.question for c in choices]
    from labmake.training.weights import load_tuned

    model, tokenizer = load_tuned(tiny_hf_student, [])
    for q, c in zip(result["multiple_choice"], choices, strict=True):
        assert q["options"] == list(c.options) and q["answer"] == c.correct
        expected = conversation_nll(
            model,
            tokenizer,
            [
                [{"role": "user", "content": c.question}, {"role": "assistant", "content": o}]
                for o in c.options
            ],
        )
        assert q["option_nll"] == [round(v, 6) for v in expected]
        assert q["chosen"] == q["option_nll"].index(min(q["option_nll"]))
        assert q["correct"] == (q["chosen"] == c.correct)
    assert len(result["answers"]) == 2 and all(isinstance(a, str) for a in result["answers"])
    for metric in ("token_f1", "rouge_l"):
        assert all(0.0 <= v <= 1.0 for v in result[metric])
    # the fake judge grades by overlap, or gives no number for an answer without words
    assert len(result["judge"]) == 2
    assert all(g is None or 1 <= g <= 10 for g in result["judge"])
    assert result["judge_identity"] == "fake-for-tests:v1"
    assert result["gguf"]["bytes"] == tiny_student_gguf.stat().st_size
    assert result["timing"]["completion_tokens"] > 0
    # same inputs, same scores (timings aside)
    again = evaluate_model(
        "base", items, cfg, 3, hf_dir=tiny_hf_student, gguf=tiny_student_gguf, choices=choices
    )
    assert {k: v for k, v in again.items() if k != "timing"} == {
        k: v for k, v in result.items() if k != "timing"
    }
