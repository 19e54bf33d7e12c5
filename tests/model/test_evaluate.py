import math

import pytest

from labmake import evaluate

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

    from labmake.train import encode

    nll = evaluate.reference_nll(tiny_hf_student, ITEMS)
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


def test_summary_per_leaf_and_overall():
    report = evaluate.summarize(
        ITEMS, [2.0, 4.0], [1.0, 5.0], {"Q8_0": ["Hat rhymes with cat.", "nothing"]}
    )
    assert report["leaves"]["a"]["reference_nll"] == {"base": 2.0, "tuned": 1.0, "delta": -1.0}
    assert report["leaves"]["b"]["reference_nll"]["delta"] == 1.0
    assert report["overall"]["reference_nll"] == {"base": 3.0, "tuned": 3.0, "delta": 0.0}
    assert report["leaves"]["a"]["token_f1"]["Q8_0"] == 1.0
    assert report["leaves"]["b"]["token_f1"]["Q8_0"] == 0.0
    assert report["improved_leaves"] == ["a"]


def test_token_f1():
    assert evaluate.token_f1("the cat sat", "the cat sat") == 1.0
    assert evaluate.token_f1("", "x") == 0.0
    assert evaluate.token_f1("a cat", "the cat sat") == pytest.approx(0.4)
