"""Framing that leaf text cannot break: every marker word, rules, code, YAML and other languages
inside seed contexts, questions and answers are data, in the prompts and in what is parsed back.

The teacher double here behaves as a base model does with a few-shot prompt: it continues the
open tag by copying the first example of the same field it sees in the prompt (so it copies
whatever that example holds, markers included), then keeps writing past the value; the stop
strings cut it the way llama.cpp does.
"""

from __future__ import annotations

import re

import pytest

from labmake.core.config import FreeformCounts, GenerateConfig, GroundedCounts, TeacherConfig
from labmake.sdg import PipelineError, generation, parse
from labmake.sdg.blocks.base import Context
from labmake.sdg.blocks.transform import ParseBlock
from labmake.teacher.protocol import Completion, Request

NASTY_CONTEXTS = [
    "Document:\n\nAll regular employees must file Form XYZ.\nQ: Who files?\nA: Everyone.\n---\n"
    "Context: see above.",
    "Meeting notes\nA: Let's start with the budget.\nB: Agreed.\nWrong: nobody objected.\n---",
    "```python\nprint('Q: x')\n# ---\n```\nDocument: the script prints a question.",
    "version: 3\nseed_examples:\n  - question: |\n      Q: what?\n    answer: 'A: yes'\n---\n...",
    "Dokument:\n東京は日本の首都です。人口は多い。\nFrage: Was ist Tokio?\nAntwort: Die Hauptstadt.",
    "A page that quotes labmake's own tags: <context>, </context>, <answer>x</answer>.",
]
NASTY_QUESTIONS = [
    "Q: Does the user file?\n\nA: maybe -- answer Yes or No.",
    "Document: which form?\n---\nContext: the form.",
    "¿Qué dice el documento?\nWrong: nada.",
    "What does `print('A: x')` print?",
    "Is <question>this</question> a trick?",
    "東京はどこですか？",
]
NASTY_ANSWERS = [
    "Yes.\nQ: next?\nA: no\n---\nWrong: none.",
    "Context: the form is XYZ.\nDocument: page 2.",
    "```yaml\nanswer: 'A: yes'\n```",
    "Die Hauptstadt Japans.\n---\nA: Ende.",
    "It says </answer> and <answer> literally.",
    "日本の首都です。",
]


def _seeds(grounded: bool) -> dict:
    return {
        "leaf": "compositional_skills/test/nasty",
        "kind": "skill",
        "grounded": grounded,
        "task_description": "Answer from the text. Q: and A: lines are part of the task.",
        "seed_examples": [
            {"question": q, "answer": a, "context": c if grounded else None}
            for q, a, c in zip(NASTY_QUESTIONS, NASTY_ANSWERS, NASTY_CONTEXTS, strict=True)
        ],
        "chunks": [],
    }


class CopyingTeacher:
    """Continues the prompt's open tag with the first same-field value the prompt shows (a base
    model copying its few-shot examples), then rambles on; stop strings cut as llama.cpp does."""

    identity = "copying-for-tests"
    n_ctx = 100_000

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        self.sent.append(request)
        tail = request.prompt.rsplit("\n", 1)[-1]
        if tail in ("Verdict:", "Score:"):
            return Completion(" yes\n" if tail == "Verdict:" else " 5\n", True)
        name = parse.open_tail(request.prompt)[1:-1]
        values = re.findall(f"<{name}>(.*?)</{name}>", request.prompt, flags=re.S)
        n = len(self.sent) % len(values)
        text = values[n] + f"</{name}>\n"
        # A context prompt asks for a question and its answer too, a question prompt its answer.
        later = {"context": ["question", "answer"], "question": ["answer"]}.get(name, [])
        for field in later:
            shown = re.findall(f"<{field}>(.*?)</{field}>", request.prompt, flags=re.S)
            text += f"<{field}>{shown[n % len(shown)]}</{field}>\n"
        text += "<question>And then Q: more</question>\n---\n"
        cut = min((text.find(s) for s in request.stop if s in text), default=len(text))
        return Completion(text[:cut], True)

    def close(self) -> None:
        pass


GEN = GenerateConfig(
    examples_per_prompt=3,
    freeform=FreeformCounts(questions=6, min_kept=0),
    grounded=GroundedCounts(contexts=6, contexts_per_request=1, min_kept=0),
)


@pytest.mark.parametrize("grounded", [False, True], ids=["freeform", "grounded"])
def test_marker_words_rules_code_yaml_and_other_languages_are_data(grounded):
    seeds = _seeds(grounded)
    teacher = CopyingTeacher()
    records = generation.generate_leaf(seeds, GEN, TeacherConfig(), 7, teacher)
    # Nothing fails to parse: every value is read whole, up to its own closing tag.
    assert not [r for r in records if r["rejected_by"] and r["rejected_by"].startswith("parse")]
    kept = [r for r in records if r["status"] == "kept"]
    assert kept
    for r in kept:
        # What the teacher copied comes back exactly: every line of it, tags in it unescaped.
        assert r["question"] in [q.strip() for q in NASTY_QUESTIONS]
        assert r["answer"] in [a.strip() for a in NASTY_ANSWERS]
        if grounded:
            assert r["context"] in [c.strip() for c in NASTY_CONTEXTS]
    if grounded:
        assert {r["context"] for r in kept} & {NASTY_CONTEXTS[0], NASTY_CONTEXTS[5]}
    # Every generation prompt frames the seeds so that reading it back gives them, whole.
    for request in teacher.sent:
        tail = parse.open_tail(request.prompt)
        if not tail:
            continue  # a judge's prompt
        shown = parse.split(request.prompt[: -len(tail)])
        assert shown.items and shown.open_field is None
        for item in shown.items:
            assert item.get("question", NASTY_QUESTIONS[0]) in NASTY_QUESTIONS
            assert item.get("answer", NASTY_ANSWERS[0]) in NASTY_ANSWERS
            assert item.get("context", NASTY_CONTEXTS[0]) in NASTY_CONTEXTS


def test_tags_inside_leaf_text_are_escaped_in_prompts_and_restored_when_parsed():
    text = "See <answer>x</answer> and </context> here."
    escaped = parse.escape(text)
    assert "<answer>" not in escaped and "</context>" not in escaped
    assert parse.unescape(escaped) == text
    assert parse.escape("No tags: Q: A: Document: ---") == "No tags: Q: A: Document: ---"
    # A value holding an escaped tag parses whole and comes back as written.
    parsed = parse.split(f"<context>\n{escaped}\n</context><question>Why?</question>")
    assert parsed.items == [{"context": text, "question": "Why?"}]


def test_a_base_teacher_writing_document_lines_gets_whole_contexts():
    """The reported failure: grounded contexts that begin with "Document:" parsed as empty."""
    completion = "\nDocument:\n\nThe Helping Hands Program lets employees volunteer.\nQ: x\n"
    items, _ = parse.split_items("<context>" + completion)
    assert items == [{"context": completion.strip()}]


@pytest.mark.parametrize(
    ("text", "finished", "reason"),
    [
        ("", True, "empty:question"),
        ("  </question> chatter", True, "empty:question"),
        ("What is it?</question>\n<question>Another?", True, "missing:answer"),
        ("What is it?</question>\n<answer>It rambles on and on", False, "cut_off"),
        ("What is it?</question>\n<answer>A tower. It rambles", False, None),
    ],
)
def test_the_parser_says_why_it_rejects(text, finished, reason):
    block = ParseBlock("p", {"input": "t", "fields": {"question": "q", "answer": "a"}}, "test")
    row = {"_id": "s0", "t": text, "_tails": {"t": "<question>"}, "_finished": {"t": finished}}
    kept, rejected = block.run([row], Context(_seeds(False), GEN, 0, 8, None, None))  # type: ignore[arg-type]
    assert [r["_reason"] for r in rejected] == ([reason] if reason else [])
    if reason is None:
        assert kept[0]["a"] == "A tower."  # cut off: back to its last whole sentence


def test_rejected_samples_keep_the_teachers_text_and_the_parsers_reason():
    class Writes(CopyingTeacher):
        def complete(self, request: Request) -> Completion:
            self.sent.append(request)
            return Completion("  </question> and then nothing", True)

    records = generation.generate_leaf(_seeds(False), GEN, TeacherConfig(), 7, Writes())
    assert {(r["rejected_by"], r["reason"]) for r in records} == {("parse_qa", "empty:question")}
    assert {r["raw"]["generate_qa"] for r in records} == {
        "<question>  </question> and then nothing"
    }


def test_old_marker_pipelines_get_one_clear_message(tmp_path):
    with pytest.raises(PipelineError, match=r"write \['question'\] for \['Q'\]"):
        ParseBlock("p", {"input": "t", "fields": {"Q": "question"}}, "mine.yaml")


def _grounded_leaf(words: int) -> dict:
    context = " ".join(f"word{i}" for i in range(words))
    return {
        "leaf": "compositional_skills/test/long",
        "kind": "skill",
        "grounded": True,
        "task_description": "Answer from the text.",
        "seed_examples": [
            {"question": f"What is word {i}?", "answer": f"It is word{i}.", "context": context}
            for i in range(5)
        ],
        "chunks": [],
    }


def _max_tokens(requests, tail):
    return {r.max_tokens for r in requests if r.prompt.endswith(tail)}


def test_budgets_come_from_the_leafs_own_seeds_within_n_ctx():
    short, long = _grounded_leaf(20), _grounded_leaf(400)
    cfg = TeacherConfig(n_ctx=4096)
    (short_ctx,) = _max_tokens(generation.estimate(short, GEN, cfg, 7), "<context>")
    (long_ctx,) = _max_tokens(generation.estimate(long, GEN, cfg, 7), "<context>")
    assert short_ctx == 200  # the pipeline's floor for a context, its question and answer
    assert long_ctx > 1.5 * len(long["seed_examples"][0]["context"]) / 4  # room for 1.5 of it
    # Never more than half the context window: the prompt needs the other half.
    medium = _grounded_leaf(200)  # 1.5 times its context is more than 512 tokens
    small_window = TeacherConfig(n_ctx=1024, max_tokens=160)
    (capped,) = _max_tokens(generation.estimate(medium, GEN, small_window, 7), "<context>")
    assert capped == 512


def test_examples_drop_to_fit_n_ctx_and_the_plan_counts_them():
    leaf, cfg = _grounded_leaf(300), TeacherConfig(n_ctx=2048)
    planned = generation.estimate(leaf, GEN, cfg, 7)
    context_prompts = [r for r in planned if r.prompt.endswith("<context>")]
    # Three 300-word contexts and room for a new one do not fit 2048 tokens: fewer examples.
    assert all(r.prompt.count("<context>") - 1 < GEN.examples_per_prompt for r in context_prompts)
    assert all(len(r.prompt) / 4 + r.max_tokens <= cfg.n_ctx for r in planned)
    # A run with a teacher counting tokens the same way sends the prompts the plan priced.
    teacher = CopyingTeacher()
    teacher.n_ctx = cfg.n_ctx
    teacher.count_tokens = lambda text: -(-len(text) // 4)  # type: ignore[method-assign]
    generation.generate_leaf(leaf, GEN, cfg, 7, teacher)
    sent = [r for r in teacher.sent if r.prompt.endswith("<context>")]
    assert [(r.prompt, r.max_tokens) for r in sent] == [
        (r.prompt, r.max_tokens) for r in context_prompts
    ]
