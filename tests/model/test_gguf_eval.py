"""One llama.cpp load per GGUF evaluation: batched greedy answers and log-probs where scored."""

from __future__ import annotations

import numpy as np
import pytest

from labmake.core.config import EvaluateConfig
from labmake.core.llama import open_llama
from labmake.evaluation.gguf_eval import GgufEvaluator, open_evaluator

pytestmark = pytest.mark.model

QUESTIONS = [
    "Why do clouds form?",
    "What is evaporation?",
    "Rewrite the sentence in a formal tone: the meeting got moved to Friday.",
    "What is condensation?",
    "To make tea, what do you do?",
]
ITEMS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ref"}]}
    for q in QUESTIONS
]


def test_log_probs_where_scored_equal_every_position_logits(tiny_student_gguf):
    ids = list(range(5, 45))
    llm = open_llama(tiny_student_gguf, n_ctx=128, n_threads=1, logits_all=True, seed=0)
    try:
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
    finally:
        llm.close()
    top = logits.max(axis=1, keepdims=True)
    expected = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    with GgufEvaluator(tiny_student_gguf, n_ctx=128, n_threads=1) as evaluator:
        rows = evaluator.logprob_rows(ids, 17, 39)
        again = evaluator.logprob_rows(ids, 17, 39)
    assert rows.shape == (22, expected.shape[1])
    # Another context layout (batch split, sliding-window cache) moves the last digits only;
    # the neighbouring positions are far off, so the check sees a one-position shift.
    np.testing.assert_allclose(rows, expected[17:39], atol=2e-3)
    assert np.abs(rows - expected[18:40]).max() > 0.05
    # rows are distributions, and the same call gives the same bytes
    np.testing.assert_allclose(np.exp(rows).sum(axis=1), 1.0, atol=1e-9)
    assert np.array_equal(rows, again)


def test_answers_are_greedy_deterministic_and_rendered_with_the_template(tiny_student_gguf):
    cfg = EvaluateConfig(max_new_tokens=8, n_threads=1)
    with open_evaluator(tiny_student_gguf, ITEMS, cfg) as evaluator:
        first = evaluator.answers(ITEMS)
        prompt = evaluator._render(ITEMS[0]["messages"][:1])
    with open_evaluator(tiny_student_gguf, ITEMS, cfg) as evaluator:
        second = evaluator.answers(ITEMS)
    assert first.texts == second.texts and len(first.texts) == len(ITEMS)
    assert 0 < first.completion_tokens <= 8 * len(ITEMS)
    # the GGUF's own (Gemma) template, with the turn the model answers in opened
    assert prompt.startswith("<bos><start_of_turn>user\nWhy do clouds form?<end_of_turn>")
    assert prompt.endswith("<start_of_turn>model\n")


def test_a_gguf_without_a_template_needs_one(tiny_student_gguf):
    with GgufEvaluator(tiny_student_gguf, n_ctx=128, n_threads=1) as evaluator:
        evaluator._template = None
        with pytest.raises(ValueError, match="no chat template"):
            evaluator.answers(ITEMS[:1])
