"""labmake.sdg: pipelines as data, checked before any teacher call, run deterministically."""

from __future__ import annotations

import re
from dataclasses import replace
from importlib.resources import files

import pytest

from labmake.core.config import (
    FreeformCounts,
    GenerateConfig,
    GroundedCounts,
    JudgeCheckConfig,
    KnowledgeCounts,
    TeacherConfig,
)
from labmake.core.hashing import derive_seed
from labmake.sdg import SHIPPED, PipelineError, check, generation, load, pipeline_for, templates
from labmake.sdg.parse import (
    first_item,
    first_sentences,
    parse_score,
    split,
    split_items,
    trim_cut_off,
)
from labmake.teacher.protocol import Completion, Request
from labmake.testing.fake_teacher import FakeTeacher

KNOWLEDGE = {
    "leaf": "knowledge/test/lighthouses",
    "kind": "knowledge",
    "grounded": False,
    "task_description": "Lighthouses",
    "seed_examples": [
        {
            "question": f"Question {c}.{q} about towers?",
            "answer": f"Answer {c}.{q} is a tower fact.",
            "context": f"Context {c} about towers.",
        }
        for c in range(5)
        for q in range(3)
    ],
    "chunks": [
        "The tower of Pharos held a fire that sailors saw from far away at night.",
        "Later lighthouses used oil lamps, then electric lights and lenses.",
        "Keepers lived in the towers and kept the lamps burning through storms.",
    ],
}
FREEFORM = {
    "leaf": "compositional_skills/test/rhymes",
    "kind": "skill",
    "grounded": False,
    "task_description": "Give a word that rhymes.",
    "seed_examples": [
        {
            "question": f"Give a word that rhymes with {w}.",
            "answer": f"{w} rhymes.",
            "context": None,
        }
        for w in ("cat", "dog", "sun", "tree", "cake")
    ],
    "chunks": [],
}
GROUNDED = {
    **FREEFORM,
    "leaf": "compositional_skills/test/notes",
    "grounded": True,
    "task_description": "List the names in the notes.",
    "seed_examples": [
        {
            "question": "Who is named?",
            "answer": f"{n} is named.",
            "context": f"Notes: {n} met the team on day {i}.",
        }
        for i, n in enumerate(("Ana", "Bo", "Cy", "Di", "Ed"))
    ],
}
# One round each (min_kept 0): the counts are the requests. Rounds have their own tests.
SMALL = GenerateConfig(
    knowledge=KnowledgeCounts(samples_per_chunk=2, min_kept=0),
    freeform=FreeformCounts(questions=5, min_kept=0),
    grounded=GroundedCounts(contexts=3, contexts_per_request=2, min_kept=0),
    # Every judge judges: these tests count and price judged samples (test_judge_check: the check).
    judge_check=JudgeCheckConfig(min_auc=0),
)


class PassingTeacher:
    """Answers every sdg prompt well-formed and passes every judge; counts requests per tail."""

    identity = "passing-for-tests"
    n_ctx = 100_000

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def complete(self, request: Request) -> Completion:
        self.sent.append(request)
        tail = request.prompt.rsplit("\n", 1)[-1]
        n = len(self.sent)
        # Knowledge answers repeat their document, as a grounded answer does.
        document = request.prompt.rsplit("<document>\n", 1)[-1].split("\n</document>")[0]
        # A freeform prompt (no document) gets the pairs_per_request pairs it asks for.
        pairs = 1 if "<document>" in request.prompt else SMALL.freeform.pairs_per_request
        question = "\n\n<question>".join(
            f"Is fact {n}.{k} about the tower of Pharos true?</question>\n<answer>"
            + (f"{document} ({n})" if pairs == 1 else f"Yes, fact {n}.{k} is.</answer>")
            for k in range(pairs)
        )
        text = {
            "Verdict:": " yes",
            "Score:": " 5",
            "<question>": question,
            "<answer>": f"Sailors saw the fire of Pharos, answer {n}.",
            "<context>": "\n\n<context>".join(
                f"\nA new text number {n}.{k} about the team.\n</context>\n"
                f"<question>Who is in text {n}.{k}?</question>\n<answer>The team.</answer>"
                for k in range(SMALL.grounded.contexts_per_request)
            ),
        }[tail.strip()]
        return Completion(text, True)

    def close(self) -> None:
        pass


def run(seeds, gen=SMALL, teacher=None, seed=7):
    teacher = teacher or FakeTeacher(TeacherConfig())
    return generation.generate_leaf(seeds, gen, TeacherConfig(), seed, teacher), teacher


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_pipeline_loads_and_checks(name):
    pipeline = load(name)
    check(pipeline, GenerateConfig())
    assert pipeline.name == name and isinstance(pipeline.version, int)
    assert pipeline.blocks[0].type == "rows"


def test_pipeline_is_chosen_by_kind_unless_params_name_one():
    gen = GenerateConfig()
    assert [pipeline_for(s, gen) for s in (KNOWLEDGE, FREEFORM, GROUNDED)] == [
        "knowledge",
        "freeform",
        "grounded",
    ]
    assert pipeline_for(KNOWLEDGE, replace(gen, pipeline="simple")) == "simple"
    with pytest.raises(PipelineError, match="'nope' is not a pipeline"):
        generation.pipeline_of(KNOWLEDGE, replace(gen, pipeline="nope"))


def _write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


BASE = """name: mine
version: 3
outputs: [question]
blocks:
  - {name: rows, type: rows, per: leaf, count: 2}
"""


def test_check_rejects_unknown_blocks_missing_columns_and_bad_templates(tmp_path):
    _write(tmp_path, "mine.yaml", BASE + "  - {name: x, type: teleport}\n")
    with pytest.raises(PipelineError, match="unknown block type 'teleport'"):
        load("mine", str(tmp_path))
    _write(tmp_path, "mine.yaml", BASE + "  - {name: f, type: filter, column: score, min: 1}\n")
    with pytest.raises(PipelineError, match=r"needs column\(s\) \['score'\]"):
        check(load("mine", str(tmp_path)))
    # A template reading a column no block writes fails the check, before any teacher call.
    _write(tmp_path / "prompts", "q.j2", "Task: {{ task_description }}\n{{ answer }}\nQ:")
    gen = "  - {name: g, type: generate, template: q.j2, output: text}\n"
    _write(tmp_path, "mine.yaml", BASE + gen)
    with pytest.raises(PipelineError, match=r"block 'g'.*\['answer'\]"):
        check(load("mine", str(tmp_path)))
    # StrictUndefined: an attribute missing from a placeholder example is an error too.
    _write(tmp_path / "prompts", "q.j2", "{% for e in examples %}{{ e.rating }}{% endfor %}\nQ:")
    with pytest.raises(PipelineError, match="does not render"):
        check(load("mine", str(tmp_path)))
    # Counts name params.yaml keys that must exist.
    _write(tmp_path, "mine.yaml", BASE.replace("count: 2", "count: freeform.answers"))
    with pytest.raises(PipelineError, match="generate.freeform.answers"):
        check(load("mine", str(tmp_path)))
    # YAML reads a bare yes as a boolean: judge labels must be quoted.
    judge = "  - {name: j, type: judge, template: q.j2, output: s, labels: {yes: 1}}\n"
    _write(tmp_path, "mine.yaml", BASE + judge)
    with pytest.raises(PipelineError, match="quote"):
        load("mine", str(tmp_path))


def test_pipelines_dir_shadows_a_shipped_pipeline_and_template(tmp_path):
    assert load("simple").source == "labmake/sdg/pipelines/simple.yaml"
    original = files("labmake.sdg").joinpath("pipelines", "simple.yaml").read_text()
    _write(tmp_path, "simple.yaml", original.replace("version: 3", "version: 9"))
    _write(tmp_path / "prompts", "simple.j2", "Task: {{ task_description }}\n<question>")
    gen = replace(SMALL, pipeline="simple", pipelines_dir=str(tmp_path), requests_per_leaf=2)
    records, teacher = run(FREEFORM, gen)
    assert {r["pipeline_version"] for r in records} == {9}
    assert {r["templates"]["generate"] for r in records} == {
        templates.sha256("simple.j2", str(tmp_path))
    }


def test_parse_score_reads_the_first_verdict_on_the_scale():
    labels = {"yes": 1, "no": 0}
    assert parse_score(" yes\n", None, labels) == 1
    assert parse_score(" No, it is not.", None, labels) == 0
    assert parse_score(" Yes, 3 reasons", (1, 5), labels) == 1
    assert parse_score(" 4/5 good", (1, 5), {}) == 4
    assert parse_score("\n\n 2 - no", (1, 5), labels) == 2
    assert parse_score(" 9", (1, 5), {}) is None  # off the scale
    assert parse_score(" maybe", (1, 5), labels) is None
    assert parse_score("", (1, 5), labels) is None


def test_items_split_on_tags_and_repeated_fields():
    text = (
        "<question>one?</question>\n<answer>line 1\nline 2</answer>\n\n"
        "<question>two?</question>\n<question>three?</question><answer>yes</answer>"
    )
    items, stray = split_items(text)
    assert items == [
        {"question": "one?", "answer": "line 1\nline 2"},
        {"question": "two?"},
        {"question": "three?", "answer": "yes"},
    ]
    assert stray == 0
    assert first_item(
        "<context>\nNotes.\n</context>\n<question>What?</question>\n<answer>This.</answer>",
        ("context", "question"),
    ) == {"context": "Notes.", "question": "What?", "answer": "This."}
    assert first_item("<question>only a question</question>", ("question", "answer")) is None
    # A value left open (its closing tag was the stop string) ends with the text; one that is
    # never closed ends where the next field opens.
    parsed = split("<question>a?</question>\n<answer>- one\n- two")
    assert parsed.items == [{"question": "a?", "answer": "- one\n- two"}]
    assert parsed.open_field == "answer"
    assert split_items("<question>a?\n<answer>b</answer>")[0] == [{"question": "a?", "answer": "b"}]
    assert split_items("chatter <question>a?</question> more")[1] == 2


def test_a_cut_off_answer_keeps_its_whole_sentences():
    assert trim_cut_off({"question": "a?", "answer": "One. Two three! And th"}) == {
        "question": "a?",
        "answer": "One. Two three!",
    }
    assert trim_cut_off({"question": "a?", "answer": "no sentence end"}) is None
    assert first_sentences("One. Two! Three? Four", 2) == "One. Two!"
    assert first_sentences("Only one, no end", 1) == "Only one, no end"

    class CutOff(PassingTeacher):
        def complete(self, request: Request) -> Completion:
            done = super().complete(request)
            if request.prompt.endswith("<answer>"):
                return Completion(done.text + " Then the lamp went", False)
            return done

    records, _ = run(FREEFORM, teacher=CutOff())
    kept = [r for r in records if r["status"] == "kept"]
    assert kept and all(r["answer"].endswith(".") for r in kept)
    assert not any("lamp went" in r["answer"] for r in kept)


@pytest.mark.parametrize("seeds", [KNOWLEDGE, FREEFORM, GROUNDED], ids=lambda s: s["leaf"])
def test_same_inputs_same_records_and_full_provenance(seeds):
    first, _ = run(seeds)
    again, _ = run(seeds)
    other, _ = run(seeds, seed=8)
    assert first == again
    assert first != other
    kept = [r for r in first if r["status"] == "kept"]
    assert kept, "the fake teacher's samples must survive the judges"
    pipeline = generation.pipeline_of(seeds, SMALL)
    for r in first:
        assert r["leaf"] == seeds["leaf"] and r["teacher"] == "fake-for-tests:v1"
        assert (r["pipeline"], r["pipeline_version"]) == (pipeline.name, pipeline.version)
        for block, seed in r["seeds"].items():
            assert seed == derive_seed(7, seeds["leaf"], block, _row_id(r["id"], block))
            assert re.fullmatch(r"[0-9a-f]{64}", r["templates"][block])
    for r in kept:
        assert r["question"] and r["answer"] and all(v is not None for v in r["scores"].values())


def _row_id(record_id: str, block: str) -> str:
    # A request writes several samples (freeform pairs, grounded triples): the block that asked
    # saw the id without the item's suffix.
    generating = ("generate_qa", "generate_triples")
    return re.sub(r"\.i\d+$", "", record_id) if block in generating else record_id


@pytest.mark.parametrize(
    ("seeds", "first_block_requests"),
    [(KNOWLEDGE, 3 * 2), (FREEFORM, 5), (GROUNDED, 3)],
    ids=["knowledge", "freeform", "grounded"],
)
def test_counts_are_honoured_and_the_plan_prices_exactly_what_passing_samples_cost(
    seeds, first_block_requests
):
    records, teacher = run(seeds, teacher=PassingTeacher())
    planned = generation.estimate(seeds, SMALL, TeacherConfig(), 7)
    # The first teacher block sends exactly the configured count.
    first_template = planned[0].prompt.rsplit("\n", 1)[-1]
    assert sum(1 for r in teacher.sent[:first_block_requests]) == first_block_requests
    assert teacher.sent[first_block_requests - 1].prompt.endswith(first_template)
    # With every judge passing, the plan's dry run is exact in count, seeds and token caps.
    assert [(r.seed, r.max_tokens, r.stop) for r in planned] == [
        (r.seed, r.max_tokens, r.stop) for r in teacher.sent
    ]
    assert planned[:first_block_requests] == teacher.sent[:first_block_requests]
    if seeds is GROUNDED:
        assert sum(r["status"] == "kept" for r in records) == 3 * 2  # requests x contexts


def test_prompts_that_do_not_fit_lose_examples_then_are_rejected():
    class Tight(PassingTeacher):
        n_ctx = 0

    records, teacher = run(FREEFORM, teacher=Tight())
    assert teacher.sent == []
    assert {(r["rejected_by"], r["reason"]) for r in records} == {
        ("generate_qa", "prompt_too_long")
    }


def test_knowledge_leaf_without_chunks_is_a_clear_error():
    with pytest.raises(PipelineError, match="generate.pipeline: simple"):
        run({**KNOWLEDGE, "chunks": []})


def test_a_refused_request_rejects_its_row_and_the_rest_go_on():
    class Refuses(PassingTeacher):
        def complete(self, request: Request) -> Completion:
            done = super().complete(request)
            if len(self.sent) == 2:
                return Completion("", False, error="HTTP 400: refused")
            return done

    records, _ = run(FREEFORM, teacher=Refuses())
    refused = [r for r in records if r["reason"] == "teacher_error"]
    assert [r["rejected_by"] for r in refused] == ["generate_qa"]
    # The four requests answered, each with pairs_per_request pairs.
    assert sum(r["status"] == "kept" for r in records) == 4 * SMALL.freeform.pairs_per_request


def test_overlap_rule_drops_ungrounded_answers_before_the_judges():
    class Ungrounded(PassingTeacher):
        def complete(self, request: Request) -> Completion:
            done = super().complete(request)
            if request.prompt.endswith("<question>"):  # the Q/A request: answer off the chunk
                return Completion("What is it?</question>\n<answer>Purple elephants dance.", True)
            return done

    records, teacher = run(KNOWLEDGE, teacher=Ungrounded())
    assert {(r["rejected_by"], r["scores"]["chunk_overlap"]) for r in records} == {
        ("keep_overlapping", 0.0)
    }
    assert not any(r.prompt.endswith("Verdict:") for r in teacher.sent)  # no judge was paid


def test_a_freeform_request_writes_several_pairs_and_each_is_judged_on_its_own():
    class Chatty(PassingTeacher):
        """Writes five pairs where three are asked for: the last two are not kept."""

        def complete(self, request: Request) -> Completion:
            if not request.prompt.endswith("<question>"):
                return super().complete(request)
            self.sent.append(request)
            n = len(self.sent)
            text = "\n\n<question>".join(
                f"Name animal {n}.{k}, please?</question>\n<answer>Animal {n}.{k}.</answer>"
                for k in range(5)
            )
            return Completion(text, True)

    one = GenerateConfig(freeform=FreeformCounts(questions=5, pairs_per_request=1, min_kept=0))
    records, teacher = run(FREEFORM, gen=SMALL, teacher=Chatty())
    asked = [r for r in teacher.sent if r.prompt.endswith("<question>")]
    judged = [r for r in teacher.sent if r.prompt.endswith("Score:")]
    kept = [r for r in records if r["status"] == "kept"]
    assert len(asked) == 5 and len(judged) == len(kept) == 5 * 3
    assert sorted(r["id"] for r in kept) == sorted(f"s{i}.i{k}" for i in range(5) for k in range(3))
    # The first three pairs of each request; the fourth and fifth were never paid for.
    assert {r["answer"].split(".")[1] for r in kept} == {"0", "1", "2"}
    assert all(r["question"].startswith("Name animal") for r in kept)
    # Room for three pairs where one is asked for one.
    single = generation.estimate(FREEFORM, one, TeacherConfig(), 7)[0].max_tokens
    assert asked[0].max_tokens == 3 * single
    # One pair per request: the ids and the request count of a one-pair pipeline.
    records, teacher = run(FREEFORM, gen=one, teacher=Chatty())
    kept = [r for r in records if r["status"] == "kept"]
    assert sorted(r["id"] for r in kept) == [f"s{i}" for i in range(5)]


def test_max_items_needs_items_all():
    from labmake.sdg.blocks.transform import ParseBlock

    with pytest.raises(PipelineError, match="max_items goes with items: all"):
        ParseBlock("parse", {"input": "t", "fields": {"question": "q"}, "max_items": 2}, "x.yaml")
