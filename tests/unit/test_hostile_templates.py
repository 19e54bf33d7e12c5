"""Hostile pipelines and templates: nothing runs, one message each, no traceback, no hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hostile import SKILL, SKILL_LEAF, project

from labmake.cli.plan import run_plan
from labmake.core.config import GenerateConfig
from labmake.evaluation import judge, report
from labmake.sdg import templates
from labmake.sdg.blocks.base import MAX_COUNT, PipelineError
from labmake.sdg.pipeline import check, load

PAYLOAD = "{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}"


def user_templates(tmp_path: Path, name: str, extra: str) -> Path:
    """A pipelines_dir whose prompts/<name> is the shipped template with ``extra`` appended."""
    folder = tmp_path / "pipelines"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts" / name).write_text(templates.source(name) + extra, encoding="utf-8")
    return folder


def test_the_cycler_payload_in_a_user_template_runs_nothing_during_plan(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = user_templates(tmp_path, "simple.j2", PAYLOAD.format(marker=marker))
    params = project(tmp_path, generate={"pipeline": "simple", "pipelines_dir": str(folder)})
    status = run_plan(params, build_dir=tmp_path / "build")
    out, err = capsys.readouterr()
    assert not marker.exists()
    assert status == 1  # the leaf cannot be priced: the plan says so and fails
    assert "sandbox" in out and "simple.j2" in out and "__init__" in out
    assert "Traceback" not in out + err


def test_the_payload_fails_the_pipeline_check_with_one_message(tmp_path):
    marker = tmp_path / "pwned"
    folder = user_templates(tmp_path, "simple.j2", PAYLOAD.format(marker=marker))
    gen = GenerateConfig(pipeline="simple", pipelines_dir=str(folder))
    with pytest.raises(PipelineError, match=r"template simple\.j2 tried something") as caught:
        check(load("simple", str(folder)), gen)
    assert "\n" not in str(caught.value) and not marker.exists()


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ lipsum.__globals__['os'].system('true') }}",
        "{{ self._TemplateReference__context }}",
        "{% set x = examples.append(1) %}",  # the immutable sandbox: no mutation either
    ],
)
def test_other_escapes_are_refused_too(tmp_path, expression):
    folder = user_templates(tmp_path, "simple.j2", expression)
    with pytest.raises(templates.TemplateProblem):
        templates.render("simple.j2", {"examples": [], **_globals()}, str(folder))


def _globals() -> dict[str, str]:
    return {name: f"<{name}>" for name in templates.LEAF_GLOBALS}


def test_shipped_templates_render_in_the_sandbox():
    assert isinstance(templates.environment(None), templates.ImmutableSandboxedEnvironment)
    env = judge._prompts()
    assert type(env).__name__ == "ImmutableSandboxedEnvironment"
    # Values are data, never templates: a question written as Jinja stays text.
    assert "{{ 3 + 4 }}" in judge.judge_prompt("{{ 3 + 4 }}", "ref", "ans")
    page = report._templates()
    assert type(page).__name__ == "ImmutableSandboxedEnvironment" and page.autoescape


def test_a_jinja_syntax_error_is_one_message(tmp_path, capsys):
    folder = user_templates(tmp_path, "simple.j2", "{% for x in %}")
    gen = GenerateConfig(pipeline="simple", pipelines_dir=str(folder))
    with pytest.raises(ValueError, match=r"template simple\.j2, line \d+: Jinja syntax error"):
        check(load("simple", str(folder)), gen)
    params = project(tmp_path / "p", generate={"pipeline": "simple", "pipelines_dir": str(folder)})
    assert run_plan(params, build_dir=tmp_path / "build") == 1
    out, err = capsys.readouterr()
    assert "Jinja syntax error" in out and "Traceback" not in out + err


def _pipeline(tmp_path: Path, block: str) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir(exist_ok=True)
    (folder / "mine.yaml").write_text(
        "name: mine\nversion: 1\noutputs: [text]\nblocks:\n"
        "  - {name: rows, type: rows, per: leaf, count: 2}\n" + block,
        encoding="utf-8",
    )
    return folder


def test_a_block_type_given_as_a_list_is_one_message(tmp_path):
    folder = _pipeline(tmp_path, "  - {name: gen, type: [generate], template: simple.j2}\n")
    with pytest.raises(PipelineError, match=r"unknown block type \['generate'\]; known: "):
        load("mine", str(folder))


def test_a_huge_count_is_refused_at_once_not_hung_on(tmp_path, capsys):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "mine.yaml").write_text(
        "name: mine\nversion: 1\noutputs: [text]\nblocks:\n"
        "  - {name: rows, type: rows, per: leaf, count: 100000000}\n"
        "  - {name: gen, type: generate, template: simple.j2, output: text}\n",
        encoding="utf-8",
    )
    params = project(
        tmp_path, {SKILL_LEAF: SKILL}, generate={"pipeline": "mine", "pipelines_dir": str(folder)}
    )
    started = time.monotonic()
    assert run_plan(params, build_dir=tmp_path / "build") == 1
    assert time.monotonic() - started < 20
    out, err = capsys.readouterr()
    assert f"over labmake's cap of {MAX_COUNT:,}" in out and "100000000" in out
    assert "Traceback" not in out + err
