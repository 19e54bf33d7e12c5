"""Careless params.yaml: every mistake is one message naming the key and the fix.

Each case is checked where a user meets it: loading the file (what every command does first),
and through `labmake build`, which must stop before Snakemake with exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hostile import repo_params

from labmake import cli
from labmake.core import config
from labmake.core.config import TeacherConfig
from labmake.teacher.protocol import TeacherError
from labmake.teacher.registry import open_teacher


def _phase(**change: object) -> dict:
    phases = repo_params()["train"]["phases"]
    return {"phases": [{**phases[0], **change}, *phases[1:]]}


# (what is wrong, the params patch, what the message must say)
MISTAKES = [
    ("judge n_ctx abc", {"evaluate": {"judge": {"n_ctx": "abc"}}}, "evaluate.judge.n_ctx: must be of integer type"),
    ("teacher temperature hot", {"teacher": {"temperature": "hot"}}, "teacher.temperature: must be of float type"),
    ("judge temperature hot", {"evaluate": {"judge": {"temperature": "hot"}}}, "evaluate.judge.temperature: must be of float type"),
    ("seed true", {"seed": True}, "seed: must be of integer type"),
    ("n_parallel true", {"teacher": {"n_parallel": True}}, "teacher.n_parallel: must be of integer type"),
    ("min words above max", {"filter": {"min_answer_words": 50, "max_answer_words": 10}}, "filter.min_answer_words (50) is above filter.max_answer_words (10)"),
    ("max_tokens = n_ctx", {"teacher": {"max_tokens": 2048, "n_ctx": 2048}}, "teacher.max_tokens (2048) must be below teacher.n_ctx (2048)"),
    ("judge max_tokens > n_ctx", {"evaluate": {"judge": {"max_tokens": 4096}}}, "evaluate.judge.max_tokens (4096) must be below evaluate.judge.n_ctx (2048)"),
    ("phase name with a newline", {"train": _phase(name="knowledge\n")}, "train.phases.0.name: value does not match"),
    ("pipelines_dir missing", {"generate": {"pipelines_dir": "no/such/folder"}}, "generate.pipelines_dir 'no/such/folder' is not a folder"),
    ("duplicate quantizations", {"export": {"quantizations": ["Q8_0", "Q4_K_M", "Q8_0"]}}, "export.quantizations lists a type twice"),
    ("judge is a list", {"evaluate": {"judge": ["openai"]}}, "evaluate.judge: must be of dict type"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def no_snakemake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`labmake build` must stop before Snakemake here; were it to start it, fail at once."""
    from labmake.cli import build

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"labmake build started {args[0] if args else 'a process'}")

    monkeypatch.setattr(build.subprocess, "run", refuse)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, patch: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(repo_params(**patch)), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("patch", "expected"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_is_one_message_naming_the_key(tmp_path, patch, expected):
    path = write(tmp_path, patch)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    message = str(caught.value)
    assert expected in message and "\n" not in message.strip("\n"), message
    assert message.startswith(str(path))


@pytest.mark.parametrize(
    ("patch", "expected"), [m[1:] for m in MISTAKES[:4]], ids=[m[0] for m in MISTAKES[:4]]
)
def test_build_stops_before_snakemake_with_the_message(tmp_path, capsys, patch, expected):
    path = write(tmp_path, patch)
    assert cli.main(["build", "--params", str(path), "-n"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_a_params_path_that_is_a_folder(tmp_path, capsys):
    with pytest.raises(config.ConfigError, match=r"is a folder, not a file; give the path"):
        config.load(tmp_path)
    assert cli.main(["plan", "--params", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_latin1_params_name_the_line_and_the_encoding(tmp_path, capsys):
    path = tmp_path / "params.yaml"
    text = yaml.safe_dump(repo_params()).replace("seed: 1234", "seed: 1234 # Jos\u00e9's run")
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    line = text.split("\n").index(next(x for x in text.split("\n") if "Jos" in x)) + 1
    assert str(caught.value) == (
        f"{path}: is not UTF-8 (byte 0xe9 on line {line}); save it again as UTF-8 (it was "
        "probably saved as Latin-1 or Windows-1252)"
    )
    assert cli.main(["build", "--params", str(path)]) == 2
    assert "is not UTF-8" in capsys.readouterr().err


def test_an_unknown_judge_backend_stops_the_build_before_it_starts(tmp_path, capsys):
    path = write(tmp_path, {"evaluate": {"judge": {"backend": "evil"}}})
    config.load(path)  # the schema cannot know the backends: plugins add theirs
    assert cli.main(["build", "--params", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown evaluate.judge.backend 'evil'; use " in err and "llama-cpp" in err
    assert str(path) in err and "Traceback" not in err


def test_an_unknown_teacher_backend_stops_the_build_before_it_starts(tmp_path, capsys):
    path = write(tmp_path, {"teacher": {"backend": "evil"}})
    assert cli.main(["build", "--params", str(path)]) == 2
    assert "unknown teacher.backend 'evil'" in capsys.readouterr().err


def test_the_stages_name_the_key_of_an_unknown_backend():
    with pytest.raises(TeacherError, match=r"^params\.yaml: unknown evaluate\.judge\.backend"):
        open_teacher(TeacherConfig(backend="evil"), "evaluate.judge")
    with pytest.raises(TeacherError, match=r"^params\.yaml: unknown teacher\.backend 'evil'"):
        open_teacher(TeacherConfig(backend="evil"))


def test_a_section_given_through_snakemake_names_its_place_too():
    data = {"judge": {"max_tokens": 900, "n_ctx": 512}}
    with pytest.raises(config.ConfigError, match=r"evaluate\.judge\.max_tokens \(900\)"):
        config.section(config.EvaluateConfig, data, "evaluate")
