"""labmake plan's cost: jobs per rule, rates measured from a build's benchmarks (or given),
time per stage, and the SLURM allocations a profile would make.

The build folders here are written by the tests (benchmark tsv files, records, metrics.json),
so each expected number follows from what the test wrote; one test runs Snakemake's own dry run
on the test taxonomy and checks the derivation from params.yaml against it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from labmake import cli
from labmake.cli import plan_cost, plan_rates
from labmake.core import artifacts
from labmake.core.config import load

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "taxonomy"
KNOWLEDGE = "knowledge/test/lighthouses"
SKILL = "compositional_skills/test/rhymes"
HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def write_benchmark(build: Path, folder: str, name: str, *seconds: float) -> None:
    """A Snakemake benchmark file: one row per repeat."""
    path = build / "benchmarks" / folder / f"{name}.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{s}\t0:00:00\t1.0\t1.0\t1.0\t1.0\t0.0\t0.0\t0.0\t0.0\n" for s in seconds)
    path.write_text(HEADER + rows, encoding="utf-8")


def fake_build(build: Path) -> None:
    """A finished build's traces: two teacher jobs of one leaf, one phase, a few other rules.

    The knowledge leaf's generate job sent 5 requests (a context two records share counts
    once) and its multiple choice 3; the phase ran 10 steps over 4000 tokens.
    """
    write_benchmark(build, "generate", KNOWLEDGE, 60.0)
    write_benchmark(build, "generate_multiple_choice", KNOWLEDGE, 20.0)
    artifacts.write_jsonl(
        build / "generated" / f"{KNOWLEDGE}.jsonl",
        [
            {"id": "a", "seeds": {"generate_context": 7, "generate_qa": 1, "judge": 2}},
            {"id": "b", "seeds": {"generate_context": 7, "generate_qa": 3, "judge": 4}},
        ],
    )
    artifacts.write_jsonl(build / "generated" / f"{KNOWLEDGE}.augmented.jsonl", [])
    artifacts.write_jsonl(
        build / "mc" / f"{KNOWLEDGE}.jsonl",
        [{"id": "q", "seeds": {"mc_generate_qa": 5, "judge_correct": 6, "generate_wrong": 8}}],
    )
    write_benchmark(build, "train", "knowledge", 50.0)
    artifacts.write_json(
        build / "checkpoints" / "knowledge" / "metrics.json",
        {"steps": 10, "input_tokens": [400] * 10},
    )
    # gguf_f16 benchmarks into build/benchmarks/gguf (rules/export.smk names the folder).
    write_benchmark(build, "gguf", "F16", 12.0)
    for model, seconds in (("base", 30.0), ("tuned", 40.0), ("gguf-Q8_0", 80.0)):
        write_benchmark(build, "evaluate", model, seconds)
    write_benchmark(build, "merge", "all", 9.0, 11.0)  # repeats: their mean


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The test taxonomy, params.yaml pointing at it, no build yet."""
    shutil.copytree(DATA, tmp_path / "taxonomy")
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["taxonomy"]["root"] = str(tmp_path / "taxonomy")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return tmp_path


def plan_json(project: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict:
    args = ["plan", "--params", str(project / "params.yaml"), "--build-dir"]
    assert cli.main([*args, str(project / "build"), "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_rates_come_from_the_benchmarks_and_what_the_jobs_did(tmp_path):
    fake_build(tmp_path)
    workflow = plan_cost.read_workflow(REPO)
    dirs = {name: rule.benchmark for name, rule in workflow.rules.items() if rule.benchmark}
    assert dirs["gguf_f16"] == "gguf" and dirs["generate"] == "generate"
    rates = plan_rates.measured_rates(tmp_path, dirs)
    assert rates is not None
    assert rates.values["teacher_seconds_per_request"] == pytest.approx((60 + 20) / (5 + 3))
    assert rates.values["train_seconds_per_step"] == pytest.approx(50 / 10)
    assert rates.values["train_tokens_per_s"] == pytest.approx(4000 / 50)
    assert rates.values["train_tokens_per_step"] == pytest.approx(400)
    assert rates.seconds_per_job["evaluate"] == 40.0  # the median of 30, 40, 80
    assert rates.seconds_per_job["gguf_f16"] == 12.0
    assert rates.seconds_per_job["merge"] == 10.0
    assert "quantize" not in rates.seconds_per_job  # never measured: no rate, no guess


def test_a_teacher_job_whose_records_are_gone_is_left_out_of_the_rate(tmp_path):
    fake_build(tmp_path)
    (tmp_path / "mc" / f"{KNOWLEDGE}.jsonl").unlink()
    rates = plan_rates.measured_rates(
        tmp_path,
        {"generate": "generate"} | {"generate_multiple_choice": "generate_multiple_choice"},
    )
    assert rates is not None
    assert rates.values["teacher_seconds_per_request"] == pytest.approx(60 / 5)


def test_no_benchmarks_no_rates(tmp_path):
    assert plan_rates.measured_rates(tmp_path, {"generate": "generate"}) is None


def test_a_rates_file_overrides_the_measured_rates_key_by_key(tmp_path):
    fake_build(tmp_path)
    measured = plan_rates.measured_rates(tmp_path, {"train": "train", "evaluate": "evaluate"})
    path = tmp_path / "gpu.yaml"
    path.write_text("train_tokens_per_s: 40000\nseconds_per_job: {evaluate: 3}\n")
    rates = plan_rates.combine(measured, plan_rates.read_rates_file(path), path)
    assert rates is not None and rates.source.startswith(str(path))
    assert rates.values["train_tokens_per_s"] == 40000
    assert rates.values["train_seconds_per_step"] == pytest.approx(5.0)  # measured, kept
    assert rates.pick("train_seconds_per_step", "train_tokens_per_s") == "train_tokens_per_s"
    assert rates.seconds_per_job["evaluate"] == 3
    # Two phases of 100 steps at the measured 400 tokens a step, on the given 40000 tokens/s.
    work = plan_rates.Work(phases=((100, 1024), (100, 1024)))
    stages = plan_rates.price({"train": 2, "evaluate": 5}, work, rates)
    assert stages["train"]["seconds"] == pytest.approx(2 * 100 * 400 / 40000)
    assert stages["evaluate"]["seconds"] == pytest.approx(5 * 3)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("teacher_token_per_s: 10\n", "unknown keys"),
        ("teacher_tokens_per_s: -1\n", "positive number"),
        ("seconds_per_job: [evaluate]\n", "map rule names"),
        ("- 1\n", "mapping"),
    ],
)
def test_a_rates_file_that_cannot_be_used_is_a_usage_error(project, capsys, text, problem):
    path = project / "rates.yaml"
    path.write_text(text)
    with pytest.raises(plan_rates.RatesError, match=problem):
        plan_rates.read_rates_file(path)
    args = ["plan", "--params", str(project / "params.yaml"), "--rates", str(path)]
    assert cli.main([*args, "--build-dir", str(project / "build")]) == 2
    assert problem in capsys.readouterr().err


def test_without_rates_plan_prints_counts_and_no_time(project, capsys):
    doc = plan_json(project, capsys, "--jobs-from", "params")
    cost = doc["cost"]
    assert cost["rates"] is None
    assert cost["jobs"]["generate"] == 2 and cost["jobs"]["generate_multiple_choice"] == 1
    assert all("seconds" not in stage for stage in cost["stages"].values())
    assert "seconds" not in cost["total"]
    assert any(note.startswith("no rates") for note in cost["notes"])
    args = ["plan", "--params", str(project / "params.yaml"), "--jobs-from", "params"]
    assert cli.main([*args, "--build-dir", str(project / "build")]) == 0
    out = capsys.readouterr().out
    assert "note: no rates" in out and "time (" not in out and " min" not in out
    assert "local (profiles/local)" in out


def test_time_per_stage_is_jobs_times_the_measured_rates(project, capsys):
    fake_build(project / "other-build")
    extra = ("--rates-from", str(project / "other-build"), "--jobs-from", "params")
    doc = plan_json(project, capsys, *extra)
    cost, totals = doc["cost"], doc["totals"]
    per_request = 80 / 8
    generate = cost["stages"]["generate"]
    first = sum(row["first_round_requests"] for row in doc["leaves"])
    assert generate["jobs"] == 3
    assert generate["seconds"] == pytest.approx(totals["requests"] * per_request, abs=0.1)
    assert generate["seconds_low"] == pytest.approx(first * per_request, abs=0.1)
    cfg = load(project / "params.yaml")
    steps = sum(phase.max_steps for phase in cfg.train.phases)
    assert cost["stages"]["train"]["seconds"] == pytest.approx(steps * 50 / 10, abs=0.1)
    # A job per model at the evaluate jobs' median; rules never measured are not counted.
    evaluate = cost["stages"]["evaluate"]
    assert evaluate["seconds"] == pytest.approx(cost["jobs"]["evaluate"] * 40.0, abs=0.1)
    assert evaluate["unpriced_jobs"]["report"] == 1
    assert cost["stages"]["other"]["unpriced_jobs"]["quantize"] == cost["jobs"]["quantize"]
    assert cost["total"]["seconds"] == pytest.approx(
        sum(stage["seconds"] for stage in cost["stages"].values())
    )


def write_workflow(root: Path) -> None:
    """A small workflow: a group written inline and on its own line, a local rule, rule all."""
    (root / "rules").mkdir(parents=True)
    (root / "Snakefile").write_text(
        'include: "rules/a.smk"\n\n\nrule all:\n    input:\n        "x"\n', encoding="utf-8"
    )
    (root / "rules" / "a.smk").write_text(
        "rule gen:\n"
        "    output:\n        'g/{leaf}'\n"
        "    benchmark:\n        paths.benchmark('gen', '{leaf}')\n"
        '    group:\n        "teacher"\n'
        "    script:\n        '../scripts/gen.py'\n\n\n"
        "rule quiz:\n"
        "    output:\n        'q/{leaf}'\n"
        "    group: 'teacher'\n"
        "    script:\n        '../scripts/quiz.py'\n\n\n"
        "rule gather:\n    localrule: True\n    script:\n        '../scripts/gather.py'\n\n\n"
        "rule fit:\n    input:\n        code('fit'),\n    shell:\n        'true'\n",
        encoding="utf-8",
    )


@pytest.mark.parametrize("components", [["teacher=8"], {"teacher": 8}, "teacher=8"])
def test_allocations_count_group_jobs_per_submission_and_skip_local_rules(tmp_path, components):
    write_workflow(tmp_path)
    workflow = plan_cost.read_workflow(tmp_path)
    assert workflow.rules["gen"].group == workflow.rules["quiz"].group == "teacher"
    assert workflow.rules["gen"].benchmark == "gen" and workflow.rules["fit"].code == "fit"
    assert workflow.rules["gather"].local and not workflow.rules["all"].runs
    profile = {"executor": "slurm", "group-components": components}
    profile["default-resources"] = ["slurm_partition=cpu", "mem_mb=1000"]
    profile["set-resources"] = {"fit": {"slurm_partition": "gpu"}}
    jobs = {"gen": 13, "quiz": 4, "gather": 1, "fit": 2, "all": 1}
    alloc = plan_cost.allocations(jobs, workflow, profile)
    assert alloc is not None
    assert alloc["groups"]["teacher"] == {
        "jobs": 17,
        "rules": {"gen": 13, "quiz": 4},
        "per_allocation": 8,
        "allocations": 3,  # ceil(17 / 8)
    }
    assert alloc["rules"] == {"fit": 2}
    assert alloc["allocations"] == 3 + 2
    assert alloc["partitions"] == {"fit": "gpu"}


def test_a_profile_may_put_rules_in_groups_and_a_local_profile_makes_no_allocations(tmp_path):
    write_workflow(tmp_path)
    workflow = plan_cost.read_workflow(tmp_path)
    profile = {"executor": "slurm", "groups": ["fit=gpu"], "group-components": ["gpu=2"]}
    alloc = plan_cost.allocations({"fit": 5, "gen": 3}, workflow, profile)
    assert alloc is not None
    assert alloc["groups"]["gpu"]["allocations"] == 3  # ceil(5 / 2)
    assert alloc["groups"]["teacher"]["allocations"] == 3  # no components: one per job
    assert plan_cost.allocations({"fit": 5}, workflow, {"cores": 2}) is None


def test_plan_counts_the_slurm_profiles_allocations(project, capsys):
    doc = plan_json(project, capsys, "--jobs-from", "params", "--profile", "profiles/slurm")
    alloc, jobs = doc["cost"]["allocations"], doc["cost"]["jobs"]
    profile = plan_cost.read_profile(REPO / "profiles" / "slurm")
    workflow = plan_cost.read_workflow(REPO)
    submitted = {
        rule: n
        for rule, n in jobs.items()
        if workflow.rules[rule].runs and not workflow.rules[rule].local
    }
    grouped = sum(row["jobs"] for row in alloc["groups"].values())
    assert sum(alloc["rules"].values()) + grouped == sum(submitted.values())
    assert "seeds" not in alloc["rules"] and "code_stamp" not in alloc["rules"]
    if "group-components" in profile:
        assert alloc["allocations"] < sum(submitted.values())


def test_a_missing_profile_named_on_the_command_line_is_a_usage_error(project, capsys):
    args = ["plan", "--params", str(project / "params.yaml"), "--profile", str(project / "no")]
    assert cli.main(args) == 2
    assert "no such folder" in capsys.readouterr().err


def test_job_stats_are_read_from_snakemakes_table():
    text = (
        "Building DAG of jobs...\nJob stats:\njob      count\n-----  -------\n"
        "generate     4\ntrain        2\ntotal        6\n\nJob stats:\njob count\n"
    )
    assert plan_cost.parse_job_stats(text) == {"generate": 4, "train": 2}
    assert plan_cost.parse_job_stats("Nothing to be done (all requested files...)") == {}


def _copy_workflow(project: Path) -> None:
    for name in ("Snakefile", "rules", "scripts", "profiles"):
        src = REPO / name
        copy = shutil.copytree if src.is_dir() else shutil.copy2
        copy(src, project / name)


def test_derived_jobs_match_snakemakes_dry_run_of_a_fresh_build(project, capsys, monkeypatch):
    _copy_workflow(project)
    monkeypatch.chdir(project)
    from_snakemake = plan_json(project, capsys, "--jobs-from", "snakemake")["cost"]
    assert from_snakemake["jobs_from"].startswith("snakemake -n"), from_snakemake["notes"]
    derived = plan_json(project, capsys, "--jobs-from", "params")["cost"]
    assert derived["jobs"] == from_snakemake["jobs"]


def test_derived_jobs_count_a_hugging_face_students_export(project, capsys, monkeypatch):
    from test_student_hf import hf_folder

    _copy_workflow(project)
    hf_folder(project / "models" / "m")
    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    params["student"] = {"hf": "models/m"}
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(project)
    from_snakemake = plan_json(project, capsys, "--jobs-from", "snakemake")["cost"]
    assert from_snakemake["jobs_from"].startswith("snakemake -n"), from_snakemake["notes"]
    derived = plan_json(project, capsys, "--jobs-from", "params")["cost"]
    assert derived["jobs"]["student_gguf"] == 1
    assert derived["jobs"] == from_snakemake["jobs"]
