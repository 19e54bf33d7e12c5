"""Knowledge multiple choice written by the teacher: parsing, options, filling, aggregation."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from test_generate_mix import KNOWLEDGE, SKILL

from labmake.core import artifacts
from labmake.core.config import MultipleChoiceConfig, TeacherConfig
from labmake.core.text import content_overlap
from labmake.sdg import PipelineError, check, load, multiple_choice
from labmake.sdg.blocks.base import Context
from labmake.sdg.blocks.options import OptionsBlock, option_key, same_option
from labmake.sdg.parse import split_items
from labmake.taxonomy import scan
from labmake.testing.fake_teacher import FakeTeacher

CFG = MultipleChoiceConfig(questions_per_chunk=3, options=4)
CHUNK = "The Nile flows north through eleven countries and ends in the Mediterranean Sea."


def _record(i: int, answer: str, distractors: list[str], leaf: str = "knowledge/a") -> dict:
    return {
        "leaf": leaf,
        "id": f"c{i}.s0",
        "chunk_index": i,
        "chunk": f"chunk {i}",
        "question": f"Question {i}?",
        "answer": answer,
        "distractors": distractors,
        "status": "kept",
        "teacher": "t",
        "pipeline": "multiple_choice",
        "pipeline_version": 1,
        "seeds": {},
        "scores": {},
    }


def test_wrong_options_parse_as_one_field_over_lines():
    text = "<question>Where?</question>\n<answer>Here.</answer>\n<wrong>\n- There.\n- Nowhere.\n"
    items, stray = split_items(text + "</wrong>\n\n")
    assert stray == 0
    assert items == [{"question": "Where?", "answer": "Here.", "wrong": "- There.\n- Nowhere."}]


def _options(answer: str, wrong: str) -> list[str]:
    block = OptionsBlock("options", {"answer": "a", "wrong": "w", "output": "d"}, "test")
    ctx = Context(seeds=KNOWLEDGE, gen=None, seed=0, max_tokens=8, complete=None, fits=None)  # type: ignore[arg-type]
    kept, rejected = block.run([{"a": answer, "w": wrong}], ctx)
    assert rejected == []
    return kept[0]["d"]


def test_options_are_split_distinct_and_never_the_right_answer():
    wrong = "- The Red Sea.\n- the red sea\n- The Mediterranean Sea!\n- (b) The Black Sea\n-  \n"
    assert _options("The Mediterranean Sea", wrong) == ["The Red Sea", "The Black Sea"]
    # On one line, semicolons separate options; a rambling "option" is no option.
    long = "word " * 20
    assert _options("1609", f"1543; 1687;{long}; 1609.") == ["1543", "1687"]
    assert _options("Yes", "") == []
    # After its list of bullets a base teacher rambles on: the prose is no option.
    assert _options("Rain", "- Snow\n- Hail\nThe water cycle is a cycle.") == ["Snow", "Hail"]
    # The right answer in other words is no wrong option, nor are two options saying the same.
    restated = "- He made moveable type.\n- He made paper\n- Paper, he made\n- He sold movable ink"
    assert _options("In Mainz, he made movable type.", restated) == [
        "He made paper",
        "He sold movable ink",
    ]


def test_options_copied_from_the_chunk_are_dropped():
    spec = {"answer": "a", "wrong": "w", "output": "d", "source": "c"}
    block = OptionsBlock("options", spec, "test")
    ctx = Context(seeds=KNOWLEDGE, gen=None, seed=0, max_tokens=8, complete=None, fits=None)  # type: ignore[arg-type]
    row = {"a": "The Mediterranean Sea", "w": "The Red Sea; Eleven countries", "c": CHUNK}
    assert block.run([row], ctx)[0][0]["d"] == ["The Red Sea"]


def test_option_key_ignores_case_punctuation_and_stop_words():
    assert option_key("The Red Sea.") == option_key("red sea") == "red sea"
    assert option_key("It is") == "it is"  # only stop words: all of them count
    assert option_key("The Red Sea") != option_key("The Black Sea")


def test_fill_takes_teacher_options_first_then_the_leafs_answers():
    records = [
        _record(0, "Evaporation", ["Freezing", "Melting", "Boiling", "Sublimation"]),
        _record(1, "The Sun", ["The Moon"]),
        _record(2, "Clouds", []),
        _record(3, "the sun", []),
        _record(4, "Rain", []),
    ]
    items, dropped = multiple_choice.fill_distractors(records, 4, seed=5)
    assert dropped == []
    by_id = {i["id"]: i for i in items}
    for item in items:
        assert len(item["options"]) == len(item["option_sources"]) == 4
        assert item["options"][item["correct"]] == item["answer"]
        assert item["option_sources"][item["correct"]] == "answer"
        assert len({option_key(o) for o in item["options"]}) == 4  # distinct
        assert not any(
            same_option(item["answer"], o) for o in item["options"] if o != item["answer"]
        )
    # Three teacher options were enough: the fourth is not used and nothing is filled.
    assert sorted(by_id["c0.s0"]["option_sources"]) == ["answer"] + ["teacher"] * 3
    assert "Sublimation" not in by_id["c0.s0"]["options"]
    # Filled from other questions' answers, each naming the question it came from.
    sources = by_id["c1.s0"]["option_sources"]
    assert sources.count("teacher") == 1
    for option, source in zip(by_id["c1.s0"]["options"], sources, strict=True):
        if source.startswith("leaf:"):
            assert option == next(r["answer"] for r in records if r["id"] == source[5:])
    # "the sun" says what c1's right answer says: never its distractor.
    assert "the sun" not in by_id["c1.s0"]["options"]
    # Same inputs, same options and order; another seed, another order.
    again, _ = multiple_choice.fill_distractors(copy.deepcopy(records), 4, seed=5)
    assert again == items
    orders = {
        tuple(i["correct"] for i in multiple_choice.fill_distractors(records, 4, seed=s)[0])
        for s in range(10)
    }
    assert len(orders) > 1


def test_a_question_with_no_possible_distractor_is_dropped():
    records = [_record(0, "The Sun", []), _record(1, "sun", [])]
    items, dropped = multiple_choice.fill_distractors(records, 4, seed=1)
    assert items == []
    assert [(d["id"], d["status"], d["reason"]) for d in dropped] == [
        ("c0.s0", "rejected", "no_distractors"),
        ("c1.s0", "rejected", "no_distractors"),
    ]


def test_pipeline_counts_resolve_in_the_evaluate_section():
    pipeline = multiple_choice.pipeline(CFG)
    assert pipeline.blocks[0].count == 3
    # Checked against the generate section, the count name is no key: a clear message.
    with pytest.raises(PipelineError, match="generate.multiple_choice.questions_per_chunk"):
        check(load("multiple_choice"))


def test_fake_teacher_build_gives_grounded_distinct_options():
    teacher = FakeTeacher(TeacherConfig())
    records = multiple_choice.generate_leaf(KNOWLEDGE, CFG, TeacherConfig(), 7, teacher)
    kept = [r for r in records if r["status"] == "kept"]
    assert kept, "the fake teacher's questions must survive"
    assert len(records) == len(KNOWLEDGE["chunks"]) * CFG.questions_per_chunk
    for item in kept:
        right = item["options"][item["correct"]]
        assert right == item["answer"]
        assert item["chunk"] == KNOWLEDGE["chunks"][item["chunk_index"]]
        assert content_overlap(right, item["chunk"]) >= 0.5  # grounded in its chunk
        assert len({option_key(o) for o in item["options"]}) == len(item["options"])
        assert 2 <= len(item["options"]) <= CFG.options
        assert item["teacher"] == FakeTeacher.identity
        assert item["scores"]["correct"] == 1  # the judge said the answer is right
    sources = {s for item in kept for s in item["option_sources"]}
    assert "teacher" in sources and any(s.startswith("leaf:") for s in sources)
    rejected_by = {r["rejected_by"] for r in records if r["status"] != "kept"}
    assert "keep_correct" in rejected_by  # the fake judge says no one time in five
    # Deterministic: the same teacher answers give the same bytes.
    again = multiple_choice.generate_leaf(KNOWLEDGE, CFG, TeacherConfig(), 7, teacher)
    assert artifacts.dumps(again) == artifacts.dumps(records)


def test_questions_are_not_the_training_datas_requests():
    # Same prompt template as the knowledge pipeline: the seeds must differ, or the teacher
    # (and its request cache) would hand back the training samples' own questions.
    from labmake.core.config import GenerateConfig
    from labmake.sdg.generation import estimate

    train = estimate(KNOWLEDGE, GenerateConfig(), TeacherConfig(), 7)
    mc = multiple_choice.estimate_requests(KNOWLEDGE, CFG, TeacherConfig(), 7)
    assert not {(r.prompt, r.seed) for r in train} & {(r.prompt, r.seed) for r in mc}
    assert not {r.seed for r in train} & {r.seed for r in mc}


def test_skill_leaves_get_no_multiple_choice():
    teacher = FakeTeacher(TeacherConfig())
    assert multiple_choice.generate_leaf(SKILL, CFG, TeacherConfig(), 7, teacher) == []
    assert multiple_choice.estimate_requests(SKILL, CFG, TeacherConfig(), 7) == []


def test_estimate_counts_every_teacher_call_of_a_question():
    requests = multiple_choice.estimate_requests(KNOWLEDGE, CFG, TeacherConfig(), 7)
    rows = len(KNOWLEDGE["chunks"]) * CFG.questions_per_chunk
    assert len(requests) == rows * 3  # question and answer, judge, wrong options


def test_aggregate_is_sorted_kept_only_and_deterministic(tmp_path: Path):
    teacher = FakeTeacher(TeacherConfig())
    other = {**KNOWLEDGE, "leaf": "knowledge/test/aardvarks"}
    files = []
    for seeds in (KNOWLEDGE, other):
        path = tmp_path / f"{seeds['leaf'].replace('/', '_')}.jsonl"
        artifacts.write_jsonl(
            path, multiple_choice.generate_leaf(seeds, CFG, TeacherConfig(), 7, teacher)
        )
        files.append(path)
    out, out2 = tmp_path / "mc.jsonl", tmp_path / "mc2.jsonl"
    multiple_choice.aggregate(files, out)
    multiple_choice.aggregate(list(reversed(files)), out2)
    assert out.read_bytes() == out2.read_bytes()
    items = artifacts.read_jsonl(out)
    kept = sum(r["status"] == "kept" for f in files for r in artifacts.read_jsonl(f))
    assert len(items) == kept
    keys = [(i["leaf"], i["chunk_index"], i["id"]) for i in items]
    assert keys == sorted(keys)
    assert {i["leaf"] for i in items} == {KNOWLEDGE["leaf"], other["leaf"]}
    assert all(set(i) == set(multiple_choice.ITEM_FIELDS) for i in items)
    empty = tmp_path / "none.jsonl"
    multiple_choice.aggregate([], empty)
    assert empty.read_text() == ""


def test_knowledge_leaves_by_folder_and_document(tmp_path: Path):
    for leaf, text in {
        "knowledge/a": "version: 3\n",
        "compositional_skills/b": "version: 3\n",
        "other/c": "version: 3\ndocument: {}\n",
        "other/d": "version: 3\n",
        "knowledge/broken": "a: [\n",
        "other/e": "a: [\n",
    }.items():
        (tmp_path / leaf).mkdir(parents=True)
        (tmp_path / leaf / "qna.yaml").write_text(text)
    leaves = [
        "compositional_skills/b",
        "knowledge/a",
        "knowledge/broken",
        "other/c",
        "other/d",
        "other/e",
    ]
    # The folder decides without reading the file (a broken one fails its seeds rule); outside
    # the kind folders a `document` key does, and a file that does not parse is no knowledge.
    assert scan.knowledge_leaves(tmp_path, leaves) == ["knowledge/a", "knowledge/broken", "other/c"]
