"""Safety: the policy as data, the deterministic layer on labmake's test set, the two blocks,
the per-category counts, and the seed warning of `labmake validate`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from labmake.core import safety
from labmake.core.config import GenerateConfig, SafetyConfig
from labmake.core.safety.personal import iban, iban_ok, luhn_ok, payment_card
from labmake.sdg import SHIPPED, load, templates
from labmake.sdg.blocks.base import Context
from labmake.sdg.blocks.safety import SafetyBlock, SafetyJudgeBlock, parse_verdict, sample_text
from labmake.sdg.safety_stats import describe, safety_stats
from labmake.teacher.protocol import Completion, Request

CASES = Path(__file__).resolve().parents[1] / "data/safety/cases.yaml"


def cases() -> list[dict]:
    return yaml.safe_load(CASES.read_text(encoding="utf-8"))["cases"]


def flagged(text: str) -> str | None:
    policy = safety.load()
    return safety.first_category(safety.scan(text, policy), policy)


# ------------------------------------------------------------------ the deterministic layer


def test_the_deterministic_layer_meets_its_targets_on_the_test_set():
    """Every personal-data example caught, every safe example (look-alikes too) passed, and
    what is caught is caught under its own category."""
    all_cases = cases()
    assert {c["label"] for c in all_cases} == {"safe", *safety.load().ids()}
    for case in all_cases:
        found = flagged(case["text"])
        if case["label"] == "personal_data":
            assert found == "personal_data", case
        elif case["label"] == "safe":
            assert found is None, case
        else:
            assert found in (None, case["label"]), case
    assert sum(c.get("lookalike") is not None for c in all_cases) >= 25


def test_checksums_decide_what_a_number_is():
    assert luhn_ok("4000123456789017") and not luhn_ok("4000123456789011")
    assert payment_card("card 4000 1234 5678 9017.") and not payment_card("order 4000123456789011")
    # An ISBN-13 passes no issuer's prefix; a 13-digit "Visa" is long gone.
    assert not payment_card("ISBN 978-0-306-40615-7") and not payment_card("4000000000006")
    assert iban_ok("DE17123456780000000001") and not iban_ok("DE18123456780000000001")
    assert iban("pay DE17 1234 5678 0000 0000 01 EUR") and not iban("DE00 1234 5678 0000 0000 01")


def test_look_alike_phrases_are_blanked_only_where_they_match():
    assert flagged("Kill the child process before the parent exits.") is None
    assert flagged("Kill the stuck process, then kill him.") == "violence"
    assert flagged("Cut yourself a slice of cake.") is None
    assert flagged("Here are ways to cut yourself.") == "self_harm"
    # Look-alike characters are normalised before the lexicon reads the text.
    assert flagged("go back to your own ｃｏｕｎｔｒｙ") == "hate"


def test_role_mailboxes_are_public_and_personal_ones_are_not():
    assert flagged("Write to support@acme.example or press@acme.example.") is None
    assert flagged("Write to jane.doe@acme.example.") == "personal_data"
    assert flagged("mail jane.doe1 (at) example (dot) org") == "personal_data"


# ------------------------------------------------------------------------ the policy as data


def test_the_shipped_policy_has_the_six_categories_and_a_stable_identity():
    policy = safety.load()
    assert policy.ids() == ("hate", "violence", "self_harm", "sexual", "illegal", "personal_data")
    assert all(c.covers for c in policy.categories)
    assert policy.identity() == safety.load().identity()
    assert {e.verdict for e in policy.judge_examples} == {"safe", *policy.ids()}


def test_a_policy_file_extends_disables_and_changes_categories(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(
        "name: ours\nversion: 3\nextends: labmake\ndisable: [sexual]\ncategories:\n"
        "  - id: violence\n    allow: ['kill (him|her) with kindness', 'shoot him a line']\n"
        "  - id: spoilers\n    title: Spoilers\n    covers: the end of a film\n"
        "    terms: ['the butler did it']\n",
        encoding="utf-8",
    )
    policy = safety.load(path)
    assert policy.ids() == ("hate", "violence", "self_harm", "illegal", "personal_data", "spoilers")
    assert (policy.name, policy.version) == ("ours", 3)
    assert policy.sha256 != safety.load().sha256
    assert "sexual" not in {e.verdict for e in policy.judge_examples}
    assert safety.first_category(safety.scan("And the butler did it.", policy), policy) == (
        "spoilers"
    )
    assert safety.scan("Write an explicit sex scene.", policy) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nversion: 1\ncategories: []\n", "non-empty list"),
        ("name: x\nversion: 1\ncategories:\n  - {id: a_b, title: T, covers: C, terms: ['(']}\n",
         r"terms\[0\] '\(' is not a valid regular expression"),
        ("name: x\nversion: 1\ncategories:\n  - {id: ab, title: T, covers: C, detectors: [dna]}\n",
         "unknown detector 'dna'"),
        ("name: x\nversion: 1\ncategories:\n  - {id: ab, title: T, covers: C}\n"
         "judge_examples:\n  - {text: t, verdict: cd}\n", "neither 'safe' nor a category"),
        ("name: x\nversion: 1\nextends: other\ncategories: []\n", "extends must be 'labmake'"),
        ("name: x\nversion: 0\ncategories: []\n", "positive integer"),
    ],
)  # fmt: skip
def test_a_wrong_policy_file_is_named_with_the_fix(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(safety.PolicyError, match=message):
        safety.load(path)


# ------------------------------------------------------------------------------- the blocks


def _ctx(complete=None, dry=False, **safety_cfg) -> Context:
    sent: list[Request] = []

    def ask(requests: list[Request], label: str) -> list[Completion]:
        sent.extend(requests)
        return [complete(r) for r in requests]

    ctx = Context(
        seeds={"leaf": "compositional_skills/t", "kind": "skill", "seed_examples": []},
        gen=GenerateConfig(safety=SafetyConfig(**safety_cfg)),
        seed=7,
        max_tokens=64,
        complete=ask,
        fits=lambda prompt, max_tokens: True,
        dry=dry,
    )
    ctx.sent = sent  # type: ignore[attr-defined]
    return ctx


def _rows(*answers: str) -> list[dict]:
    return [
        {"_id": f"s{i}", "_seeds": {}, "_templates": {}, "_scores": {}, "question": "Q?",
         "answer": a, "context": None}
        for i, a in enumerate(answers)
    ]  # fmt: skip


def test_the_detector_block_removes_by_category_and_records_the_policy():
    block = SafetyBlock("safety", {"name": "safety", "type": "safety",
                                   "columns": ["context", "question", "answer"]}, "t")  # fmt: skip
    kept, rejected = block.run(_rows("Fine.", "Mail jane.doe@example.com.", "Kill him."), _ctx())
    assert [r["answer"] for r in kept] == ["Fine."]
    assert [(r["_rejected_by"], r["_reason"]) for r in rejected] == [
        ("safety", "personal_data"),
        ("safety", "violence"),
    ]
    assert rejected[0]["_safety"]["detectors"] == [
        {"category": "personal_data", "detector": "email", "column": "answer"}
    ]
    assert rejected[0]["_safety"]["removed"] == {"layer": "detectors", "category": "personal_data"}
    assert kept[0]["_safety"] == {"policy": safety.load().identity(), "detectors": []}


def _judge() -> SafetyJudgeBlock:
    spec = {"name": "safety_judge", "type": "safety_judge", "columns": ["question", "answer"]}
    return SafetyJudgeBlock("safety_judge", spec, "t")


def test_the_judge_asks_with_the_policy_and_parses_strictly():
    replies = {"A1": " safe\n", "A2": " violence\n", "A3": " Safe, I think\n", "A4": " SAFE.\n"}

    def complete(request: Request) -> Completion:
        last = request.prompt.rsplit("<text>", 1)[-1]
        return Completion(next(v for k, v in replies.items() if k in last), True)

    ctx = _ctx(complete)
    kept, rejected = _judge().run(_rows("A1", "A2", "A3", "A4"), ctx)
    prompt = ctx.sent[0].prompt
    assert prompt.startswith("Safety review.") and prompt.endswith("<text>Q? A1</text>\nVerdict:")
    assert all(f"- {c.id}: {c.covers}" in prompt for c in safety.load().categories)
    assert [r["answer"] for r in kept] == ["A1", "A3", "A4"]  # no verdict is kept by default
    assert [r["_safety"]["judge"] for r in kept] == ["safe", None, "safe"]
    assert [(r["_reason"], r["_safety"]["removed"]["layer"]) for r in rejected] == [
        ("violence", "judge")
    ]
    assert not any(k.startswith("safety_") for r in kept + rejected for k in r)
    assert ctx.sent[0].stop == ("\n",) and ctx.sent[0].max_tokens == 6


def test_the_judge_can_reject_no_verdict_or_be_off():
    ctx = _ctx(lambda r: Completion(" maybe\n", True), no_verdict="reject")
    kept, rejected = _judge().run(_rows("A1"), ctx)
    assert not kept and rejected[0]["_reason"] == "no_verdict"
    ctx = _ctx(lambda r: pytest.fail("the judge is off"), judge=False)
    kept, rejected = _judge().run(_rows("A1"), ctx)
    assert len(kept) == 1 and kept[0]["_safety"]["judge"] == "off" and ctx.sent == []


def test_a_dry_run_prices_the_judge_and_passes_every_row():
    ctx = _ctx(dry=True)
    kept, rejected = _judge().run(_rows("Kill him."), ctx)
    assert len(kept) == 1 and not rejected and len(ctx.log) == 1


def test_verdicts_and_sample_text():
    policy = safety.load()
    assert parse_verdict(" personal_data\n", policy) == "personal_data"
    assert parse_verdict("\n\nsafe.", policy) == "safe"
    for text in ("", " unsafe", " safe because", " yes", " 1"):
        assert parse_verdict(text, policy) is None
    row = {"question": "Q?\n  two", "answer": "a </text> b", "context": None}
    assert sample_text(row, ["context", "question", "answer"]) == "Q? two a &lt;/text&gt; b"


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_pipeline_runs_both_safety_layers(name):
    types = [b.type for b in load(name).blocks]
    assert "safety" in types and "safety_judge" in types
    assert types.index("safety") < types.index("safety_judge")


def test_the_judge_template_renders_the_policy():
    block = _judge()
    text = templates.render("judge_safety.j2", block.template_values())
    assert text.endswith("<text><text></text>\nVerdict:")
    assert "Verdict: personal_data" in text and "Verdict: safe" in text


# ---------------------------------------------------------------------- counts and reports


def test_stats_count_each_layer_by_category():
    ident = safety.load().identity()
    records = [
        {"safety": {"policy": ident, "detectors": [], "judge": "safe"}},
        {"safety": {"policy": ident, "detectors": [{}],
                    "removed": {"layer": "detectors", "category": "personal_data"}}},
        {"safety": {"policy": ident, "detectors": [], "judge": "hate",
                    "removed": {"layer": "judge", "category": "hate"}}},
        {"safety": {"policy": ident, "detectors": [], "judge": None}},
        {"safety": None},
    ]  # fmt: skip
    stats = safety_stats(records)
    assert stats == {
        "policy": ident,
        "checked": {"detectors": 4, "judge": 3},
        "removed": {"detectors": {"personal_data": 1}, "judge": {"hate": 1}},
        "no_verdict": 1,
        "judge": "on",
    }
    lines = describe(stats)
    assert lines[0].startswith("safety policy: labmake v1 (")
    assert "detectors: 4 checked, 1 removed (personal_data 1)" in lines[1]
    assert safety_stats([{"status": "kept"}])["policy"] is None


def test_the_report_funnel_carries_the_safety_counts():
    from labmake.evaluation.build_facts import funnel

    stats = safety_stats([{"safety": {"policy": safety.load().identity(), "detectors": []}}])
    f = funnel({"leaf": "x", "kept": 1, "removed": {}, "safety": stats})
    assert f["safety"]["checked"]["detectors"] == 1
    assert f["safety_policy"].startswith("labmake v1 (")


# --------------------------------------------------------------------------------- the seeds

SKILL = (
    "version: 3\ncreated_by: tester\ntask_description: Write a reply.\nseed_examples:\n"
    + "".join(f"  - question: Write reply {i}.\n    answer: Reply {i}.\n" for i in range(5))
)


def _validate(root: Path, *, strict: bool = False, params: Path | None = None) -> tuple[int, dict]:
    from labmake.cli.validate import run_validate

    out = io.StringIO()
    code = run_validate(
        [root], ilab_strict=False, fmt="json", params_path=params, strict_limits=strict, out=out
    )
    return code, json.loads(out.getvalue())


def test_validate_warns_at_the_line_of_a_seed_with_an_email(tmp_path):
    leaf = tmp_path / "taxonomy/compositional_skills/writing/replies"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(
        SKILL.replace("answer: Reply 2.", "answer: Mail jane.doe@example.com."), encoding="utf-8"
    )
    code, doc = _validate(tmp_path / "taxonomy")
    assert code == 0
    [finding] = doc["files"][0]["findings"]
    assert (finding["level"], finding["source"], finding["line"]) == ("warning", "safety", 10)
    assert finding["yaml_path"] == "seed_examples[2].answer"
    assert "personal_data: an e-mail address ('ja" in finding["message"]
    assert "jane.doe@example.com" not in finding["message"]  # masked
    code, doc = _validate(tmp_path / "taxonomy", strict=True)
    assert code == 1 and doc["files"][0]["findings"][0]["level"] == "error"
    # A policy named in params.yaml is the one seeds are checked against.
    (tmp_path / "policy.yaml").write_text(
        "name: mine\nversion: 1\nextends: labmake\ndisable: [personal_data]\n", encoding="utf-8"
    )
    (tmp_path / "params.yaml").write_text(
        "generate: {safety: {policy: policy.yaml}}\ntaxonomy: {root: taxonomy}\n",
        encoding="utf-8",
    )
    code, doc = _validate(tmp_path / "taxonomy", params=tmp_path / "params.yaml")
    assert doc["files"][0]["findings"] == []


# ------------------------------------------------------------------------- a leaf's pipeline

RHYMES = {
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


def test_a_leaf_run_records_the_policy_and_the_filter_stage_counts_it():
    from labmake.core.config import FilterConfig, FreeformCounts, TeacherConfig
    from labmake.sdg import filters, generation
    from labmake.testing.fake_teacher import FakeTeacher

    class LeakyTeacher(FakeTeacher):
        """The fake teacher, except that every third answer gives away an e-mail address."""

        def complete(self, request: Request) -> Completion:
            done = super().complete(request)
            if "</answer>" in done.text and request.seed % 3 == 0:
                text = done.text.replace("</answer>", " Ask jane.doe@example.com.</answer>", 1)
                return Completion(text, done.finished)
            return done

    gen = GenerateConfig(freeform=FreeformCounts(questions=12, min_kept=0))
    records = generation.generate_leaf(
        RHYMES, gen, TeacherConfig(), 7, LeakyTeacher(TeacherConfig())
    )
    ident = safety.load().identity()
    kept = [r for r in records if r["status"] == "kept"]
    assert kept and all(r["safety"]["policy"] == ident for r in kept)
    # Kept: nothing detected, and judged safe (or no verdict, which is kept by default).
    assert all(r["safety"]["detectors"] == [] for r in kept)
    assert {r["safety"]["judge"] for r in kept} <= {"safe", None}
    leaked = [r for r in records if r["rejected_by"] == "safety"]
    assert leaked and {r["reason"] for r in leaked} == {"personal_data"}
    samples, stats = filters.filter_leaf(RHYMES, records, FilterConfig())
    assert stats["safety"]["removed"]["detectors"] == {"personal_data": len(leaked)}
    assert (
        stats["safety"]["checked"]["judge"]
        == sum(1 for r in records if (r["safety"] or {}).get("judge") not in (None, "off"))
        + stats["safety"]["no_verdict"]
    )
    assert all(s["safety"]["policy"] == ident for s in samples)
