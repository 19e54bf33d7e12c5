"""Knowledge multiple choice, scored by option likelihood: no generation at scoring time.

The teacher writes the questions (``labmake.sdg.multiple_choice``, build/data/multiple_choice.jsonl);
here a Hugging Face model "chooses" the option with the lowest mean NLL as the assistant's
answer to the question, so the score is deterministic and needs no judge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.evaluation.scores import conversation_nll


@dataclass(frozen=True)
class Choice:
    leaf: str
    question: str
    options: tuple[str, ...]
    correct: int  # index of the right option


def read_choices(mc_path: Path) -> list[Choice]:
    """The questions of build/data/multiple_choice.jsonl (see labmake.sdg.multiple_choice)."""
    return [
        Choice(item["leaf"], item["question"], tuple(item["options"]), int(item["correct"]))
        for item in artifacts.read_jsonl(mc_path)
    ]


def choices_of(result: dict[str, Any]) -> list[Choice]:
    """The questions a model answered, as its build/eval/{model}.json records them."""
    return [
        Choice(q["leaf"], q["question"], tuple(q["options"]), q["answer"])
        for q in result["multiple_choice"]
    ]


def score_choices(model: Any, tokenizer: Any, choices: Sequence[Choice]) -> list[dict[str, Any]]:
    """Per question: each option's mean NLL as the answer to it, and the model's choice."""
    out = []
    for c in choices:
        prompt = {"role": "user", "content": c.question}
        nll = conversation_nll(
            model, tokenizer, [[prompt, {"role": "assistant", "content": o}] for o in c.options]
        )
        chosen = min(range(len(nll)), key=nll.__getitem__)
        out.append(
            {
                "leaf": c.leaf,
                "question": c.question,
                "options": list(c.options),
                "answer": c.correct,
                "option_nll": [round(v, 6) for v in nll],
                "chosen": chosen,
                "correct": chosen == c.correct,
            }
        )
    return out
