"""A deterministic, rule-based teacher for the test suite (backend ``fake-for-tests``).

It answers labmake's few-shot prompts in their own format, building questions and answers
from the words of the prompt, so that every stage downstream gets well-formed data without a
language model. Each response also carries one malformed item and one exact repeat, so that
the filters have real work to do. It is never a default: params.yaml must name it.

Importing this module registers the backend. Production code never imports it: the tests name
it in ``LABMAKE_TEACHER_PLUGINS`` (tests/conftest.py), which the teacher registry imports, in
pytest and in the Snakemake processes a workflow test starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

from labmake.core import safety
from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import Completion, Request
from labmake.teacher.registry import register

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


# Test-only request counter: when this names a file, every request appends one JSON line to it,
# {"rule", "leaf", "prompt_sha256", "seed", "prompt"}, so a test can count the requests a build
# sent per leaf. rule and leaf come from the Snakemake job running this process (null outside
# one): a job's script runs as __main__ with a global `snakemake` object.
REQUEST_LOG_ENV = "LABMAKE_FAKE_TEACHER_LOG"


def _snakemake_job() -> tuple[str | None, str | None]:
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    if job is None:
        return None, None
    return getattr(job, "rule", None), getattr(getattr(job, "wildcards", None), "leaf", None)


def _log_request(request: Request) -> None:
    path = os.environ.get(REQUEST_LOG_ENV)
    if not path:
        return
    digest = hashlib.sha256(request.prompt.encode("utf-8")).hexdigest()
    rule, leaf = _snakemake_job()
    line = {"rule": rule, "leaf": leaf, "prompt_sha256": digest, "seed": request.seed}
    line["prompt"] = request.prompt
    data = (json.dumps(line, sort_keys=True) + "\n").encode("utf-8")
    # One write() on an O_APPEND descriptor: concurrent generate jobs never split a line.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_request_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The logged requests, in order; [] when nothing was logged."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line]


# Test-only judge (labmake.evaluation.judge's judge_answer.j2 ends with "Score:"): grades by word
# overlap of the last "Answer:" with the last "Reference:", 1-10; an answer with no words gets
# a reply without a number, so that tests see the unparseable path too.
JUDGE_MARKER = "Score:"


def _judge(prompt: str) -> Completion:
    def last(field: str) -> set[str]:
        line = prompt.rsplit(f"\n{field}:", 1)[-1].split("\n", 1)[0]
        return _words(line)

    answer, reference = last("Answer") - {"answer"}, last("Reference")
    if not answer:
        return Completion(text=" cannot tell\n", finished=True)
    overlap = len(answer & reference) / max(len(answer | reference), 1)
    return Completion(text=f" {1 + round(9 * overlap)}\n", finished=True)


# Test-only safety judge (labmake.sdg's judge_safety.j2 starts with this header): the
# deterministic layer's category for the last <text>, else "safe", and one reply in twenty that
# is no verdict (kept by default). It removes only what the detectors would: a build's training
# data is the same with the judge on or off, so the judge's path is tested without changing
# what the tiny student learns.
SAFETY_HEADER = "Safety review."


def _safety_verdict(prompt: str, rng: random.Random) -> Completion:
    text = prompt.rsplit("<text>", 1)[-1].split("</text>", 1)[0]
    policy = safety.load()
    category = safety.first_category(safety.scan(text, policy), policy)
    if category is None:
        category = "unsure" if rng.random() < 0.05 else "safe"
    return Completion(text=f" {category}\n", finished=True)


def _last(prompt: str, tag: str) -> str:
    """The value of the prompt's last closed ``<tag>...</tag>`` ("" when it has none)."""
    found = re.findall(f"<{tag}>(.*?)</{tag}>", prompt, flags=re.S)
    return found[-1].strip() if found else ""


# A test leaf whose task description holds this word gets nothing usable from the fake teacher
# (empty completions): the workflow tests build it to see a leaf that yields nothing flagged
# while the other leaves train.
SILENT = "zorblat-silent"


def _sdg_answer(request: Request) -> Completion | None:
    """labmake.sdg's one-item prompts: verdicts, 1-5 scores, open answers, multiple-choice
    wrong options and chunk rewrites; None otherwise.

    Verdicts pass four times in five and scores of answers on topic run 2-5, so the pipelines'
    filters have real work to do while samples still survive.
    """
    rng = random.Random(f"sdg\x1f{request.seed}\x1f{request.prompt}")
    tail = request.prompt.rstrip().rsplit("\n", 1)[-1]
    if tail == "Verdict:" and request.prompt.startswith(SAFETY_HEADER):
        return _safety_verdict(request.prompt, rng)
    if tail == "Verdict:":
        return Completion(text=" no\n" if rng.random() < 0.2 else " yes\n", finished=True)
    if tail == "Score:" and "<answer>" in request.prompt:
        # A pair judge that can tell (labmake.sdg.judge_check asks it about the seeds first): an
        # answer with no word of its question or context scores 1-2, any other 2-5.
        answer = _words(_last(request.prompt, "answer"))
        asked = _words(_last(request.prompt, "question") + " " + _last(request.prompt, "context"))
        scores = [2, 3, 4, 5, 5] if answer & asked else [1, 2]
        return Completion(text=f" {rng.choice(scores)}\n", finished=True)
    if tail == "<wrong>":
        return _wrong_options(request.prompt, rng)
    if tail == "<rewrite>":
        return _rewrite(request.prompt)
    if tail.endswith("<answer>"):
        # An open answer to the question just asked, built from its words and the prompt's.
        question = _last(request.prompt, "question")
        words = sorted(set(_WORD.findall(request.prompt))) or ["thing"]
        topic = " ".join(_WORD.findall(question)[-3:]) or "it"
        answer = f"About {topic.lower()}: {rng.choice(words)} and {rng.choice(words)} fit here."
        return Completion(text=f"{answer}</answer>\n", finished=True)
    return None


def _rewrite(prompt: str) -> Completion:
    """A rewrite of labmake.sdg.augment's chunk (the prompt's last document) in the form the
    prompt's first line asks for -- its first two sentences (a summary), its three longest on
    "- " lines (key facts), all of them in reverse order (rephrased) -- made of the chunk's own
    words, so that the overlap and length rules pass it and the judge decides; a chunk of one
    sentence gets itself back, which the augment pipeline drops as a copy."""
    chunk = _last(prompt, "document")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", chunk) if s.strip()] or [chunk]
    head = prompt.split("\n", 1)[0]
    if "summary" in head:
        text = " ".join(sentences[:2])
    elif "key facts" in head:
        text = "\n".join(f"- {s}" for s in sorted(sentences, key=len, reverse=True)[:3])
    else:
        text = " ".join(reversed(sentences))
    return Completion(text=f"\n{text}\n", finished=True)


def _wrong_options(prompt: str, rng: random.Random) -> Completion:
    """Wrong options for labmake.sdg.multiple_choice's last question: one per line, built from the
    words of its right answer. One time in five none at all (the stage then fills the question
    from its leaf), and one time in three the right answer slips in (the options rule drops it).
    """
    answer = _last(prompt, "answer")
    words = sorted(_words(answer)) or ["thing"]
    if rng.random() < 0.2:
        return Completion(text="\n", finished=True)
    options = [
        f"- Not {w}, but {rng.choice(words)} of {k + 2} kinds." for k, w in enumerate(words[:3])
    ]
    if rng.random() < 0.33:
        options.insert(rng.randrange(len(options) + 1), f"- {answer}")
    return Completion(text="\n" + "\n".join(options) + "\n</wrong>\n", finished=True)


class FakeTeacher:
    identity = "fake-for-tests:v1"

    def __init__(self, cfg: TeacherConfig) -> None:
        self.n_ctx = cfg.n_ctx
        self.requests_seen = 0

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        self.requests_seen += 1
        _log_request(request)
        sdg = _sdg_answer(request)
        if sdg is not None:
            return sdg
        if request.prompt.rstrip().endswith(JUDGE_MARKER):
            return _judge(request.prompt)
        if SILENT in request.prompt:
            return Completion(text="", finished=True)
        rng = random.Random(f"{request.seed}\x1f{request.prompt}")
        # The material to ground answers in: the last document of a knowledge prompt, else the
        # whole prompt.
        source = request.prompt.rsplit("<document>", 1)[-1].split("</document>", 1)[0]
        source = re.sub(r"</?[a-z]+>", "\n", source)  # its words, not the prompt's tags
        sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", source) if len(s.split()) >= 4]
        words = sorted(set(_WORD.findall(source))) or ["example", "sample", "thing"]
        grounded = request.prompt.rstrip().endswith("<context>")
        items = []
        for _ in range(3):
            a, b = rng.sample(words, 2) if len(words) >= 2 else (words[0], words[0])
            answer = rng.choice(sentences) if sentences else f"{a} goes with {b}."
            question = f"How does {a.lower()} relate to {b.lower()} here?"
            item = f"<question>{question}</question>\n<answer>{answer}</answer>"
            if grounded:
                context = " ".join(rng.sample(words, min(12, len(words))))
                item = f"<context>\n{context}.\n</context>\n{item}"
            items.append(item)
        items.append(items[0])  # an exact repeat, for the dedup filter
        # malformed: no answer
        items.append("<question>a question the teacher never answered</question>")
        text = "\n\n".join(items) + "\n"
        # The prompt already ends with the first open tag: continue after it.
        marker = "<context>" if grounded else "<question>"
        return Completion(text=text[len(marker) :], finished=True)

    def close(self) -> None:
        pass


register("fake-for-tests", FakeTeacher)
