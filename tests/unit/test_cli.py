import subprocess
import sys
from pathlib import Path

import pytest

from labmake import cli

REPO = Path(__file__).resolve().parents[2]
LABMAKE = str(Path(sys.executable).parent / "labmake")


def test_version_and_help():
    out = subprocess.run([LABMAKE, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("labmake ")
    helptext = subprocess.run(
        [LABMAKE, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("validate", "diff", "plan", "build", "chat", "serve"):
        assert command in helptext


def test_build_with_broken_params_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: -1\ntrain: {phases: []}\n")
    assert cli.main(["build", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "seed" in err and "train.phases" in err
    assert "Traceback" not in err


def test_chat_and_serve_refuse_a_missing_model(tmp_path, capsys):
    missing = tmp_path / "nope.gguf"
    assert cli.main(["chat", str(missing)]) == 2
    assert "no such GGUF file" in capsys.readouterr().err
    assert cli.main(["serve", str(missing)]) == 2


def test_unknown_command_exits_2():
    result = subprocess.run([LABMAKE, "frobnicate"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.model
def test_chat_answers_over_a_pipe(tiny_student_gguf):
    result = subprocess.run(
        [LABMAKE, "chat", str(tiny_student_gguf), "--max-tokens", "6", "--temperature", "0"],
        input="Hello there\n/reset\nTell me about lighthouses\n/exit\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("model> ")]
    assert len(replies) == 2 and all(len(r) > len("model> ") for r in replies)
