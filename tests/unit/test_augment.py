"""Document augmentation (generate.knowledge.augment): each knowledge chunk rewritten (summary,
key facts, rephrased), the rewrites judged against their chunk, the kept ones read as extra
chunks by the Q/A pipeline and traced to their source, the rejected ones recorded, all of it
counted by the plan, deterministic, and nothing at all when off."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from test_sdg import KNOWLEDGE

from labmake import cli
from labmake.cli import samples
from labmake.core import artifacts
from labmake.core.config import (
    AugmentConfig,
    ConfigError,
    FilterConfig,
    GenerateConfig,
    KnowledgeCounts,
    MixConfig,
    TeacherConfig,
    load,
    validate,
)
from labmake.sdg import filters, generation, mix
from labmake.taxonomy.leaf import load_leaf
from labmake.taxonomy.limits import estimate_tokens
from labmake.taxonomy.seeds import leaf_record
from labmake.teacher.protocol import Completion, Request
from labmake.testing.fake_teacher import FakeTeacher

REPO = Path(__file__).resolve().parents[2]
# test_sdg's knowledge leaf, with chunks of three sentences: a rewrite can differ from its chunk.
LEAF = {
    **KNOWLEDGE,
    "chunks": [
        "The tower of Pharos held a fire that sailors saw from far away at night. It stood on an "
        "island near Alexandria. An earthquake brought it down in the fourteenth century.",
        "Later lighthouses used oil lamps, then electric lights. Fresnel lenses bent the light "
        "into one beam. Such a beam could be seen forty kilometres out at sea.",
        "Keepers lived in the towers and kept the lamps burning through storms. They trimmed the "
        "wicks every few hours. Most lights now run without any keeper.",
    ],
}
KINDS = ("summary", "key_facts", "rephrase")
# One round (min_kept 0): the counts are the requests. Rounds have a test of their own below.
ON = GenerateConfig(
    knowledge=KnowledgeCounts(samples_per_chunk=2, min_kept=0, augment=AugmentConfig(kinds=KINDS))
)
OFF = replace(ON, knowledge=replace(ON.knowledge, augment=AugmentConfig()))


class Recording(FakeTeacher):
    """The fake teacher, keeping every request it was sent."""

    def __init__(self) -> None:
        super().__init__(TeacherConfig())
        self.sent: list[Request] = []

    def complete(self, request: Request) -> Completion:
        self.sent.append(request)
        return super().complete(request)


def _run(gen, teacher=None, accept=None):
    """(the rewrites' records, the sample records) of LEAF, as the generate stage makes them."""
    teacher = teacher or Recording()
    seeds, rewrites = generation.augment_leaf(LEAF, gen, TeacherConfig(), 7, teacher)
    return rewrites, generation.generate_leaf(seeds, gen, TeacherConfig(), 7, teacher, None, accept)


def _rewrite_id(sample_id: str) -> str:
    return sample_id.rsplit(".s", 1)[0]


def test_kept_rewrites_become_chunks_whose_samples_are_traced_to_their_source():
    rewrites, records = _run(ON)
    assert len(rewrites) == len(LEAF["chunks"]) * len(KINDS)  # one per chunk and kind
    assert {(r["pipeline"], r["kind"]) for r in rewrites} == {("augment", "knowledge")}
    kept = {r["id"]: r for r in rewrites if r["status"] == "kept"}
    assert kept and {r["augment_kind"] for r in kept.values()} == set(KINDS)
    from_rewrites = [r for r in records if "chunk_source" in r]
    # Each kept rewrite is a chunk like the document's: samples_per_chunk rows, judged alike.
    assert Counter(_rewrite_id(r["id"]) for r in from_rewrites) == dict.fromkeys(kept, 2)
    assert any(r["status"] == "kept" for r in from_rewrites)
    for r in from_rewrites:
        source = kept[_rewrite_id(r["id"])]
        assert r["chunk_source"] == {"index": source["chunk_index"], "kind": source["augment_kind"]}
        assert r["chunk_index"] == source["chunk_index"]
        assert r["chunk"] == source["rewrite"] != LEAF["chunks"][r["chunk_index"]]
    for r in records:
        if "chunk_source" not in r:
            assert r["chunk"] == LEAF["chunks"][r["chunk_index"]]
    # The filter stage keeps the trace, and the mix's document forms show the rewrite, with the
    # document chunk it came from never among the distractors.
    accepted, _ = filters.filter_leaf(LEAF, records, FilterConfig(min_chunk_overlap=0.0))
    sample = next(s for s in accepted if "chunk_source" in s)
    assert sample["chunk_source"] == next(
        r["chunk_source"] for r in records if r["id"] == sample["id"]
    )
    cfg = MixConfig(knowledge_forms=("document", "distractors"), distractors=5)
    document, distractors = mix.knowledge_forms(sample, LEAF["chunks"], cfg, random.Random(1))
    assert document["messages"][0]["content"].startswith(sample["chunk"])
    assert LEAF["chunks"][sample["chunk_index"]] not in distractors["messages"][0]["content"]


class Unfaithful(Recording):
    """Chunk 0's summary drifts off its chunk; every rewrite of chunk 1 is judged unfaithful;
    chunk 2's rephrasing copies it."""

    def complete(self, request: Request) -> Completion:
        prompt = request.prompt
        chunk = prompt.rsplit("<document>", 1)[-1]
        if prompt.endswith("<rewrite>") and "Pharos" in chunk and "a summary" in prompt[:80]:
            self.sent.append(request)
            return Completion("\nPurple elephants dance on the moon every Sunday.\n", True)
        if prompt.endswith("<rewrite>") and "Keepers" in chunk and "other words" in prompt[:80]:
            self.sent.append(request)
            return Completion(f"\n{LEAF['chunks'][2]}\n", True)
        if prompt.endswith("Verdict:") and "</rewrite>" in chunk and "Fresnel" in chunk:
            self.sent.append(request)
            return Completion(" no\n", True)
        return super().complete(request)


def test_an_unfaithful_rewrite_is_rejected_recorded_and_never_asked_about():
    teacher = Unfaithful()
    rewrites, records = _run(ON, teacher)
    by_id = {r["id"]: r for r in rewrites}
    drifted = by_id["c0.summary0"]
    assert (drifted["status"], drifted["rejected_by"], drifted["reason"]) == (
        "rejected",
        "keep_grounded_rewrites",
        "below_threshold",
    )
    assert drifted["scores"]["rewrite_overlap"] == 0.0
    assert "Purple elephants" in drifted["raw"]["generate_rewrite"]
    for kind in KINDS:
        judged = by_id[f"c1.{kind}0"]
        assert (judged["rejected_by"], judged["verdicts"]["rewrite_faithfulness"]) == (
            "keep_faithful_rewrites",
            "no",
        )
    copied = by_id["c2.rephrase0"]
    assert (copied["rejected_by"], copied["reason"]) == ("dedup", "copy_of_source")
    # The judge is not paid for what the rules dropped, and no Q/A is asked about a rejected
    # rewrite.
    judged_texts = [r.prompt for r in teacher.sent if r.prompt.endswith("Verdict:")]
    assert not any("Purple elephants" in p for p in judged_texts)
    asked = [r.prompt for r in teacher.sent if r.prompt.endswith("<question>")]
    assert asked and not any("Purple elephants" in p for p in asked)
    rejected = {r["id"] for r in rewrites if r["status"] == "rejected"}
    assert not {_rewrite_id(r["id"]) for r in records if "chunk_source" in r} & rejected


def test_data_show_explains_the_rewrites(tmp_path):
    rewrites, records = _run(ON, Unfaithful())
    leaf = LEAF["leaf"]
    artifacts.write_jsonl(tmp_path / "generated" / f"{leaf}.jsonl", records)
    artifacts.write_jsonl(tmp_path / "generated" / f"{leaf}.augmented.jsonl", rewrites)
    shown = samples.load_leaf_samples(tmp_path, leaf, None)
    (note,) = shown.notes
    kept = sum(r["status"] == "kept" for r in rewrites)
    assert note.startswith(f"{kept} of {len(rewrites)} chunk rewrites were kept")
    assert "1 by keep_grounded_rewrites (below_threshold)" in note
    assert "by dedup (copy_of_source)" in note
    traced = [s for s in shown.samples if "chunk_source" in s.extras]
    assert len(traced) == sum("chunk_source" in r for r in records) > 0


def test_off_sends_nothing_more_and_writes_the_same_samples():
    teacher = Recording()
    rewrites, records = _run(OFF, teacher)
    plain = Recording()
    assert rewrites == []
    assert records == generation.generate_leaf(LEAF, OFF, TeacherConfig(), 7, plain)
    assert teacher.sent == plain.sent
    assert not any("chunk_source" in r for r in records)
    # On, the rows over the document's own chunks are untouched: the same records, first.
    _, on = _run(ON)
    assert [r for r in on if "chunk_source" not in r] == records
    # Skill leaves, and knowledge leaves without chunks or whose pipeline does not make rows
    # per chunk (the only rows that read rewrites), are never augmented.
    simple = replace(ON, pipeline="simple")
    for seeds, gen in (
        ({**LEAF, "kind": "skill"}, ON),
        ({**LEAF, "chunks": []}, ON),
        (LEAF, simple),
    ):
        assert generation.augment_leaf(seeds, gen, TeacherConfig(), 7, Recording()) == (seeds, [])
    assert generation.request_bound(LEAF, simple, TeacherConfig(), 7).rewrites == 0


def test_the_plan_counts_rewrites_and_the_requests_on_them():
    planned = generation.request_bound(LEAF, ON, TeacherConfig(), 7)
    off = generation.request_bound(LEAF, OFF, TeacherConfig(), 7)
    rewrites = len(LEAF["chunks"]) * len(KINDS)
    assert [r.prompt.endswith("<rewrite>") for r in planned.first].count(True) == rewrites
    assert planned.rewrites == 2 * rewrites  # each rewrite and its judge
    # Every rewrite kept: that many more chunks, each costing what a document chunk costs.
    assert planned.on_rewrites == rewrites * len(off.first) // len(LEAF["chunks"])
    assert (
        len(planned.first)
        == planned.most
        == planned.rewrites + len(off.first) + (planned.on_rewrites)
    )
    assert (off.rewrites, off.on_rewrites) == (0, 0)
    # A run sends at most what the plan counted, with the same seeds for the rewrites.
    teacher = Recording()
    _run(ON, teacher)
    assert len(teacher.sent) <= len(planned.first)
    asked = [(r.seed, r.max_tokens) for r in teacher.sent if r.prompt.endswith("<rewrite>")]
    assert asked == [(r.seed, r.max_tokens) for r in planned.first[:rewrites]]


def test_labmake_plan_shows_the_rewrites_per_leaf(tmp_path, capsys):
    root = tmp_path / "taxonomy"
    shutil.copytree(REPO / "tests/data/taxonomy", root)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["taxonomy"]["root"] = str(root)
    params["generate"]["knowledge"]["augment"] = {"kinds": ["summary", "rephrase"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    args = ["plan", "--params", str(tmp_path / "params.yaml"), "--build-dir", str(tmp_path / "b")]
    assert cli.main([*args, "--format", "json"]) == 0
    rows = {row["leaf"]: row for row in json.loads(capsys.readouterr().out)["leaves"]}
    cfg = load(tmp_path / "params.yaml")
    leaf = "knowledge/test/lighthouses"
    record = leaf_record(load_leaf(root, leaf), cfg.seeds, estimate_tokens)
    bound = generation.request_bound(record, cfg.generate, cfg.teacher, cfg.seed)
    assert rows[leaf]["augment_requests"] == bound.rewrites == 2 * 2 * len(record["chunks"])
    assert rows[leaf]["augmented_qa_requests"] == bound.on_rewrites > 0
    skills = [row for name, row in rows.items() if not name.startswith("knowledge/")]
    assert skills and not any("augment_requests" in row for row in skills)
    assert cli.main(args) == 0
    assert f"[{bound.rewrites} chunk rewrites" in capsys.readouterr().out


def test_rounds_reuse_the_rewrites_and_ask_about_them_again():
    teacher = Recording()
    gen = replace(ON, knowledge=replace(ON.knowledge, min_kept=60, max_requests=400))
    rewrites, records = _run(gen, teacher, FilterConfig())
    assert max(r["round"] for r in records) >= 1
    assert [r.prompt.endswith("<rewrite>") for r in teacher.sent].count(True) == len(rewrites)
    later = {_rewrite_id(r["id"]) for r in records if r["round"] >= 1 and "chunk_source" in r}
    assert later == {r["id"] for r in rewrites if r["status"] == "kept"}


def test_two_stage_runs_write_the_same_bytes(tmp_path, monkeypatch):
    seeds_path = tmp_path / "seeds.json"
    artifacts.write_json(seeds_path, LEAF)
    teacher = TeacherConfig(backend="fake-for-tests")
    outputs = []
    for run in ("a", "b"):  # each with a cache of its own: the teacher answers both times
        monkeypatch.setenv("LABMAKE_TEACHER_CACHE", str(tmp_path / run / "cache"))
        out, rewrites = tmp_path / run / "generated.jsonl", tmp_path / run / "augmented.jsonl"
        generation.run(seeds_path, out, teacher, ON, 7, FilterConfig(), rewrites)
        outputs.append((out.read_bytes(), rewrites.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][1].count(b"\n") == len(LEAF["chunks"]) * len(KINDS)
    monkeypatch.setenv("LABMAKE_TEACHER_CACHE", str(tmp_path / "off" / "cache"))
    off = tmp_path / "off" / "augmented.jsonl"
    generation.run(seeds_path, tmp_path / "off" / "generated.jsonl", teacher, OFF, 7, None, off)
    assert off.read_bytes() == b""


def test_kinds_are_checked_with_the_config():
    raw = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    raw["generate"]["knowledge"]["augment"] = {"kinds": ["summary", "poem"]}
    with pytest.raises(ConfigError, match="generate.knowledge.augment.kinds"):
        validate(raw)
    with pytest.raises(ConfigError, match="twice"):
        AugmentConfig(kinds=("summary", "summary"))
