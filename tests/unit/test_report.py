"""The build report: report.json and a self-contained report.html from a synthetic build."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest

from labmake.core import artifacts
from labmake.core.config import EvaluateConfig
from labmake.evaluation import report
from labmake.evaluation.build_facts import funnel, read_timings
from labmake.evaluation.summary import RegressionError

K1, S = "knowledge/science/lamps", "compositional_skills/writing/rhymes"
SECTIONS = {"inputs", "data", "training", "evaluation", "models", "timings"}


def item(leaf: str, kind: str, question: str, answer: str) -> dict:
    return {
        "leaf": leaf,
        "kind": kind,
        "question": question,
        "answer": answer,
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ],
    }


ITEMS = [
    item(K1, "knowledge", "What colour is the lamp?", "The lamp is red."),
    item(K1, "knowledge", "How tall is the tower?", "The tower is <40> metres & tall."),
    item(S, "skill", "Rhyme with cat.", "Hat rhymes with cat."),
]


def write_gguf_metadata(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_string("general.name", "tiny (labmake)")
    writer.add_string("labmake.version", "0.1.0")
    writer.add_string("labmake.teacher", "fake-for-tests:v1")
    writer.add_string("labmake.taxonomy_sha256", "ab" * 32)
    writer.add_uint32("labmake.leaves", 2)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def model_result(name: str, eval_path: Path, **scores) -> dict:
    return {"model": name, "items": 3, "items_sha256": artifacts.sha256_file(eval_path), **scores}


# Knowledge multiple choice as labmake.sdg.multiple_choice writes it (from the leaf's documents).
MC_ITEMS = [
    {
        "leaf": K1,
        "id": f"c{i}.s0",
        "chunk_index": i,
        "question": question,
        "options": ["Red", "Blue"],
        "correct": correct,
        "option_sources": ["answer", "teacher"] if correct == 0 else ["teacher", "answer"],
    }
    for i, (question, correct) in enumerate(
        [("Which colour is the harbour lamp?", 0), ("Which colour is the sea at dusk?", 1)]
    )
]


@pytest.fixture
def build(tmp_path: Path) -> dict:
    b = tmp_path / "build"
    eval_path = b / "data/eval.jsonl"
    artifacts.write_jsonl(eval_path, ITEMS)
    mc_path = b / "data/multiple_choice.jsonl"
    artifacts.write_jsonl(mc_path, MC_ITEMS)
    mc = [
        {
            "leaf": q["leaf"],
            "question": q["question"],
            "options": q["options"],
            "answer": q["correct"],
            "option_nll": [1.0, 2.0],
            "chosen": 0,
            "correct": q["correct"] == 0,
        }
        for q in MC_ITEMS
    ]
    mc_sha = {"multiple_choice_sha256": artifacts.sha256_file(mc_path)}
    gguf_scores = {
        "answers": ["The lamp is red.", "<script>alert(1)</script>", "Hat."],
        "token_f1": [1.0, 0.0, 0.5],
        "rouge_l": [1.0, 0.0, 0.5],
        "judge": [10, None, 5],
        "judge_raw": [" 10", " no idea", " 5"],
        "judge_identity": "fake-for-tests:v1",
    }
    results = {
        "base": model_result(
            "base",
            eval_path,
            reference_nll=[3.0, 3.5, 4.0],
            multiple_choice=mc,
            **mc_sha,
            **{**gguf_scores, "token_f1": [0.2, 0.0, 0.1], "rouge_l": [0.2, 0.0, 0.1]},
            gguf={"file": "student.gguf", "bytes": 2_000_000},
            timing={"tokens_per_s": 30.0, "completion_tokens": 24, "seconds": 0.8},
        ),
        "phase-knowledge": model_result(
            "phase-knowledge",
            eval_path,
            reference_nll=[2.5, 3.0, 4.0],
            multiple_choice=mc,
            **mc_sha,
        ),
        "tuned": model_result(
            "tuned", eval_path, reference_nll=[2.0, 2.5, 3.0], multiple_choice=mc, **mc_sha
        ),
        "gguf-Q8_0": model_result(
            "gguf-Q8_0",
            eval_path,
            **gguf_scores,
            gguf={"file": "model.Q8_0.gguf", "bytes": 1_000_000},
            timing={"tokens_per_s": 40.0, "completion_tokens": 24, "seconds": 0.6},
        ),
    }
    models = []
    for name, result in results.items():
        models.append(b / f"eval/{name}.json")
        artifacts.write_json(models[-1], result)
    seeds, stats = [], []
    for leaf, kind in ((K1, "knowledge"), (S, "skill")):
        seeds.append(b / f"seeds/{leaf}.json")
        artifacts.write_json(
            seeds[-1],
            {
                "leaf": leaf,
                "kind": kind,
                "documents": [{"name": "lamps.md", "sha256": "0"}] if kind == "knowledge" else [],
                "seed_examples": [{}] * 5,
                "chunks": ["c"] if kind == "knowledge" else [],
            },
        )
        stats.append(b / f"filtered/{leaf}.stats.json")
        artifacts.write_json(
            stats[-1],
            {
                "leaf": leaf,
                "requests": 4,
                "candidates": 9,
                "kept": 5,
                "removed": {"malformed": 4, "near_duplicate": 3, "a_new_filter": 1},
                "safety": SAFETY_STATS,
            },
        )
    checkpoints = []
    for phase, losses in (("knowledge", [3.0, 2.5, 2.0]), ("skills", [2.2, 1.8])):
        checkpoints.append(b / f"checkpoints/{phase}")
        evals = [{"step": 2, "heldout_loss": 2.6}, {"step": len(losses), "heldout_loss": 2.7}]
        metrics = {"phase": phase, "loss": losses, "heldout_loss": evals, "chosen_step": 2}
        artifacts.write_json(checkpoints[-1] / "metrics.json", metrics)
        by = "evaluation_nll" if phase == "skills" else "heldout_loss"
        artifacts.write_json(
            checkpoints[-1] / "labmake_phase.json", {"selected_checkpoint": {"step": 2, "by": by}}
        )
    artifacts.write_json(b / "data/mix.json", {"sizes": {"eval": 3, "knowledge": 10, "skills": 8}})
    bench = b / "benchmarks"
    for rule, name, seconds in (
        ("train", "knowledge", 12.5),
        ("train", "skills", 7.5),
        ("mix", "all", 1),
    ):
        (bench / rule).mkdir(parents=True, exist_ok=True)
        (bench / rule / f"{name}.tsv").write_text(
            f"s\th:m:s\tmax_rss\n{seconds}\t0:00:12\t512.5\n", encoding="utf-8"
        )
    write_gguf_metadata(b / "model.F16.gguf")
    inputs = {
        "eval": str(eval_path),
        "mc": str(mc_path),
        "models": [str(p) for p in models],
        "f16": str(b / "model.F16.gguf"),
        "seeds": [str(p) for p in seeds],
        "filter_stats": [str(p) for p in stats],
        "checkpoints": [str(p) for p in checkpoints],
        "mix_stats": str(b / "data/mix.json"),
    }
    return {"dir": b, "inputs": inputs, "bench": bench}


def run(build: dict, cfg: EvaluateConfig, name: str = "report") -> tuple[dict, str, Path]:
    out_json = build["dir"] / f"eval/{name}.json"
    out_html = build["dir"] / f"{name}.html"
    rep = report.run(
        build["inputs"],
        cfg=cfg,
        seed=3,
        params={"seed": 3, "evaluate": {"fail_on_regression": cfg.fail_on_regression}},
        out_json=out_json,
        out_html=out_html,
        benchmarks=build["bench"],
    )
    return rep, out_html.read_text(encoding="utf-8"), out_json


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.sources: list[str] = []  # every src/href that could make a request
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key):
                self.sources.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


# What the safety layers removed (labmake.sdg.safety_stats), as a leaf's stats file holds it.
SAFETY_STATS = {
    "policy": {"name": "labmake", "version": 1, "sha256": "5c20f7c9706f" + "0" * 52},
    "checked": {"detectors": 9, "judge": 7},
    "removed": {"detectors": {"personal_data": 2}, "judge": {"violence": 1}},
    "no_verdict": 1,
    "judge": "on",
}


def test_report_html_is_self_contained_with_every_section(build):
    rep, html, out_json = run(build, EvaluateConfig(bootstrap_resamples=200))
    assert artifacts.read_json(out_json) == rep
    page = Page()
    page.feed(html)
    assert page.ids >= SECTIONS
    # Every image is embedded; nothing points outside the file (links are in-page anchors).
    assert len(page.images) >= 8  # funnel, loss, NLL, MC, F1, ROUGE-L, judge, GGUF, timings
    for img in page.images:
        assert img["src"].startswith("data:image/svg+xml;base64,")
        svg = base64.b64decode(img["src"].split(",", 1)[1]).decode("utf-8")
        root = ElementTree.fromstring(svg)
        assert root.tag.endswith("svg")
        # Namespace URIs are names, not requests; links inside the SVG stay inside it.
        links = [v for el in root.iter() for k, v in el.attrib.items() if k.endswith("href")]
        assert links and all(link.startswith("#") for link in links)
        assert img.get("alt")
    assert all(s.startswith(("data:", "#")) for s in page.sources)
    assert page.scripts == 0  # a model's answer "<script>..." is escaped, not run
    text = " ".join(page.text)
    for expected in (K1, S, "fake-for-tests:v1", "model.Q8_0.gguf", "a_new_filter", "knowledge"):
        assert expected in text
    assert "<script>alert(1)</script>" in text  # shown as text
    # Each phase's kept checkpoint and what chose it, in the table and the loss plot's legend.
    assert "heldout loss" in text and "evaluation nll" in text
    loss_plot = next(i for i in page.images if "loss" in (i.get("alt") or ""))
    assert base64.b64decode(loss_plot["src"].split(",", 1)[1]).count(b"<path") > 10
    # The multiple-choice questions are the generated ones, with where they come from.
    assert "Which colour is the harbour lamp?" in text
    assert "written by the teacher from the knowledge leaves' documents" in " ".join(text.split())
    assert rep["overall"]["n_multiple_choice"] == 2
    assert rep["leaves"][K1]["multiple_choice"]["models"]["tuned"]["mean"] == 0.5
    # The safety layers' removals per leaf and category, and the policy they applied.
    assert "personal_data −2" in text and "violence −1" in text
    assert "labmake v1 (5c20f7c9706f)" in text
    # the funnel adds up: kept + every removal = items
    assert "17" in text or "13" in text


def test_scores_of_another_multiple_choice_file_are_refused(build):
    artifacts.write_jsonl(build["inputs"]["mc"], MC_ITEMS[:1])
    with pytest.raises(ValueError, match="multiple_choice.jsonl"):
        run(build, EvaluateConfig(bootstrap_resamples=200))


def test_report_is_deterministic_apart_from_timings(build):
    _, first, _ = run(build, EvaluateConfig(bootstrap_resamples=200), "a")
    _, second, _ = run(build, EvaluateConfig(bootstrap_resamples=200), "b")
    assert first == second


def test_funnel_puts_the_pipelines_judges_first():
    f = funnel(
        {
            "leaf": "x",
            "generated": 12,
            "kept": 3,
            "removed": {"near_duplicate": 2},
            "removed_by_pipeline": {"keep_relevant": 1, "keep_faithful": 6},
        }
    )
    assert f["removed"] == [("keep_faithful", 6), ("keep_relevant", 1), ("near_duplicate", 2)]
    assert f["parsed"] == 12


def test_funnel_orders_known_filters_first():
    f = funnel({"leaf": "x", "kept": 2, "removed": {"zzz": 1, "near_duplicate": 2, "malformed": 3}})
    assert f["removed"] == [("malformed", 3), ("near_duplicate", 2), ("zzz", 1)]
    assert f["parsed"] == 8


def test_timings_sum_jobs_per_rule(build):
    rows = read_timings(build["bench"])
    assert [r["rule"] for r in rows] == ["mix", "train"]  # pipeline order
    assert rows[1]["jobs"] == 2 and rows[1]["seconds"] == 20.0 and rows[1]["rss"] == 512.5


def test_regression_fails_only_when_asked(build):
    # tuned worse than base on every item of K1
    tuned = build["dir"] / "eval/tuned.json"
    result = artifacts.read_json(tuned)
    result["reference_nll"] = [4.0, 4.5, 3.0]
    artifacts.write_json(tuned, result)
    rep, html, _ = run(build, EvaluateConfig(bootstrap_resamples=200))
    assert [(r["leaf"], r["metric"]) for r in rep["regressions"]] == [(K1, "reference_nll")]
    assert "Regression" in html
    with pytest.raises(RegressionError, match=K1):
        run(build, EvaluateConfig(bootstrap_resamples=200, fail_on_regression=True), "strict")
    # the outputs were written before failing (Snakemake then decides what to keep)
    assert (build["dir"] / "strict.html").is_file()


def test_a_flagged_leaf_is_in_report_json_and_on_top_of_the_page(build):
    stats_path = Path(build["inputs"]["filter_stats"][1])
    stats = artifacts.read_json(stats_path)
    hint = f"{S}: the filters kept 0 of 9 samples ... Hints: the teacher may be too weak"
    artifacts.write_json(stats_path, {**stats, "kept": 0, "flagged": True, "hint": hint})
    rep, html, _ = run(build, EvaluateConfig(bootstrap_resamples=200))
    assert rep["flagged_leaves"] == [{"leaf": S, "kept": 0, "hint": hint}]
    banner = html.index("Leaves with little or no synthetic data")
    assert banner < html.index('id="inputs"') and hint in html[banner:]
    artifacts.write_json(stats_path, stats)  # a leaf without the flag: no banner
    rep, html, _ = run(build, EvaluateConfig(bootstrap_resamples=200), "again")
    assert rep["flagged_leaves"] == [] and "little or no synthetic data" not in html
    assert rep["judges_off"] == []


def test_a_leaf_whose_judge_failed_its_seed_check_is_listed_and_shown(build):
    stats_path = Path(build["inputs"]["filter_stats"][1])
    stats = artifacts.read_json(stats_path)
    off = {"auc": 0.4, "pairs": 25, "min_auc": 0.75, "used": False}
    used = {"auc": 0.9, "pairs": 25, "min_auc": 0.75, "used": True}
    checks = {"judge_pair": off, "judge_other": used}
    artifacts.write_json(stats_path, {**stats, "judge_checks": checks})
    rep, html, _ = run(build, EvaluateConfig(bootstrap_resamples=200))
    assert rep["judges_off"] == [
        {"leaf": stats["leaf"], "judge": "judge_pair", "auc": 0.4, "min_auc": 0.75}
    ]
    assert "judge_pair: off, samples unjudged (AUC 0.40)" in html
    assert "judge_other: used (AUC 0.90)" in html
