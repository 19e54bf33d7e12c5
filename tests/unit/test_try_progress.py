"""labmake try's reading of Snakemake's output: the jobs planned, started and finished, the
stages' progress lines with their ETA, the errors; each step's ETA and where the time went."""

from __future__ import annotations

import io
import time
from pathlib import Path

from labmake.cli import trial_display
from labmake.cli.trial_display import Display, _covered, clock, time_summary
from labmake.cli.trial_run import DEFAULT_SECONDS, Estimates, StepRun, Stream

LEAF = "compositional_skills/language/freeform/plurals"
OUTPUT = f"""Building DAG of jobs...
Job stats:
job                count
---------------  -------
seeds                  1
generate               1
train                  1
total                  3

Select jobs to execute...
[Thu Dec  3 08:44:14 2026]
localrule seeds:
    input: taxonomy/{LEAF}/qna.yaml
    jobid: 6
    wildcards: leaf={LEAF}
Shell command: None
[Thu Dec  3 08:44:14 2026]
Finished jobid: 6 (Rule: seeds)
1 of 3 steps (33%) done

[Thu Dec  3 08:44:15 2026]
rule generate:
    jobid: 8
    wildcards: leaf={LEAF}
    threads: 2
Shell command: None
2026-12-03 08:44:18,699 labmake.core.progress: {LEAF}: generate_question: 3/12 (25%), 2 s elapsed, ETA 26 s
"""


def _feed(text: str, times: list[float] | None = None) -> tuple[Stream, list[tuple[str, str]]]:
    stream, events = Stream(), []
    for i, line in enumerate(text.splitlines(keepends=True)):
        event = stream.feed(line, times[i] if times else float(i))
        if event is not None:
            events.append((event[0], event[1].label))
    return stream, events


def test_jobs_planned_started_finished_and_progress():
    stream, events = _feed(OUTPUT)
    assert dict(stream.planned) == {"seeds": 1, "generate": 1, "train": 1}
    assert events == [
        ("started", f"seeds {LEAF}"),
        ("finished", f"seeds {LEAF}"),
        ("started", f"generate {LEAF}"),
        ("progress", f"generate {LEAF}"),
    ]
    generate = stream.jobs["8"]
    assert generate.detail == "generate_question 3/12" and generate.eta == 26.0
    assert generate.finished is None and stream.jobs["6"].finished is not None
    assert not stream.nothing_to_do and not stream.errors


def test_errors_and_nothing_to_do():
    stream, _ = _feed(
        "labmake filter: error: x: the filters kept 0 of 3 samples\n"
        "Nothing to be done (all requested files are present and up to date).\n"
    )
    assert stream.errors == ["x: the filters kept 0 of 3 samples"]
    assert stream.nothing_to_do


def test_train_progress_shows_the_step_count():
    stream, _ = _feed(
        "rule train:\n    jobid: 3\n    wildcards: phase=skills\nShell command: None\n"
        "2026-12-03 08:46:34,873 labmake.core.progress: train skills: 4/12 (33%), loss 3.88, "
        "tok_s 30, 3 s elapsed, ETA 21 s\n"
    )
    assert stream.jobs["3"].label == "train skills"
    assert stream.jobs["3"].detail == "4/12" and stream.jobs["3"].eta == 21.0


def test_estimates_from_benchmarks_of_earlier_runs(tmp_path: Path):
    tsv = tmp_path / "build/benchmarks/generate" / f"{LEAF}.tsv"
    tsv.parent.mkdir(parents=True)
    tsv.write_text("s\th:m:s\tmax_rss\n17.5\t0:00:17\t900\n")
    other = tmp_path / "build/benchmarks/generate/knowledge/x.tsv"
    other.parent.mkdir(parents=True)
    other.write_text("s\th:m:s\n40.0\t0:00:40\n")
    estimates = Estimates(tmp_path / "missing", tmp_path)
    assert estimates.expected("generate", LEAF) == 17.5
    assert estimates.expected("generate", "knowledge/y") == 28.75  # the median of the rule's
    assert estimates.expected("train", "skills") == DEFAULT_SECONDS["train"]
    stream, _ = _feed(OUTPUT)
    # train not started (its default), generate running with its own ETA (26 s).
    assert estimates.remaining(stream, 100.0) == DEFAULT_SECONDS["train"] + 26


def test_display_off_a_terminal_prints_a_line_per_job_with_the_eta(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(trial_display, "LINE_EVERY_S", 0.0)
    out = io.StringIO()
    display = Display(Estimates(tmp_path), out)
    display.begin("data")
    stream = Stream()
    display("begin", None, stream)
    for line in OUTPUT.splitlines(keepends=True):
        event = stream.feed(line, time.monotonic())
        if event is not None:
            display(event[0], event[1], stream)
    display("end", None, stream)
    text = out.getvalue()
    assert f"> seeds {LEAF} (usually ~{DEFAULT_SECONDS['seeds']} s" in text
    assert f"done seeds {LEAF} in 0 s" in text and "generate_question 3/12, ETA 26 s" in text
    assert "step ETA ~" in text


def test_time_summary_counts_jobs_side_by_side_once():
    assert _covered([(0, 10), (5, 15), (20, 25)]) == 20
    stream, _ = _feed(OUTPUT, times=[float(i) for i in range(40)])
    out = io.StringIO()
    step = StepRun("data: seeds", stream, 30.0, 0)
    time_summary([step], [("validate", 0.5)], [("results", 1.0)], 32.0, out)
    text = out.getvalue()
    assert "where the time went (32 s in all)" in text
    assert "validate" in text and f"seeds {LEAF}" in text and "snakemake, data" in text
    assert clock(75) == "1:15" and clock(9.6) == "10 s"
