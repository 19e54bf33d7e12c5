"""A deterministic, rule-based teacher for the test suite (backend ``fake-for-tests``).

It answers labmake's few-shot prompts in their own format, building questions and answers
from the words of the prompt, so that every stage downstream gets well-formed data without a
language model. Each response also carries one malformed item and one exact repeat, so that
the filters have real work to do. It is never a default: params.yaml must name it.
"""

from __future__ import annotations

import random
import re

from ..config import TeacherConfig
from ..teacher import Completion, Request

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


class FakeTeacher:
    identity = "fake-for-tests:v1"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.n_ctx = cfg.n_ctx
        self.requests_seen = 0

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        self.requests_seen += 1
        rng = random.Random(f"{request.seed}\x1f{request.prompt}")
        # The material to ground answers in: the last document of a knowledge prompt, else the
        # whole prompt.
        source = request.prompt.rsplit("Document:", 1)[-1]
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", source) if len(s.split()) >= 4]
        words = sorted(set(_WORD.findall(source))) or ["example", "sample", "thing"]
        grounded = request.prompt.rstrip().endswith("Context:")
        items = []
        for _ in range(3):
            a, b = rng.sample(words, 2) if len(words) >= 2 else (words[0], words[0])
            answer = rng.choice(sentences) if sentences else f"{a} goes with {b}."
            question = f"How does {a.lower()} relate to {b.lower()} here?"
            item = f"Q: {question}\nA: {answer}"
            if grounded:
                item = f"Context:\n{' '.join(rng.sample(words, min(12, len(words))))}.\n{item}"
            items.append(item)
        items.append(items[0])  # an exact repeat, for the dedup filter
        items.append("Q: a question the teacher never answered")  # malformed: no answer
        text = "\n---\n".join(items) + "\n---\n"
        # The prompt already ends with the first marker ("Q:" or "Context:"): continue after it.
        marker = "Context:" if grounded else "Q:"
        return Completion(text=text[len(marker) :], finished=True)

    def close(self) -> None:
        pass
