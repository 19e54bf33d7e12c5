"""evaluate.hf_answers: a Hugging Face model (the base, or with phases applied) writes greedy
answers with its own chat template, for models no GGUF was made of (labmake try)."""

from __future__ import annotations

import pytest

from labmake.core.config import EvaluateConfig
from labmake.evaluation.answers import _stop_ids
from labmake.evaluation.run import evaluate_model

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


def test_hf_models_answer_only_when_asked(tiny_hf_student):
    cfg = EvaluateConfig(max_new_tokens=6, hf_answers=True)
    first = evaluate_model("base", ITEMS, cfg, 0, hf_dir=tiny_hf_student)
    again = evaluate_model("base", ITEMS, cfg, 0, hf_dir=tiny_hf_student)
    assert len(first["hf_answers"]) == len(ITEMS)
    assert all(isinstance(a, str) for a in first["hf_answers"])
    assert first["hf_answers"] == again["hf_answers"]  # greedy: the same every time
    plain = evaluate_model(
        "base", ITEMS, EvaluateConfig(max_new_tokens=6), 0, hf_dir=tiny_hf_student
    )
    assert "hf_answers" not in plain and plain["reference_nll"] == first["reference_nll"]


def test_answers_stop_at_the_templates_end_of_turn(tiny_hf_student):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_student)
    stops = _stop_ids(tokenizer)
    assert tokenizer.eos_token_id in stops
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert end_of_turn in stops
