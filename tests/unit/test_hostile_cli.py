"""`labmake build` passes Snakemake's own arguments through as users type them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hostile import REPO

from labmake import cli
from labmake.cli import build
from labmake.cli.build import builds_nothing, split_command_line

LABMAKE = str(Path(sys.executable).parent / "labmake")


@pytest.mark.parametrize(
    ("argv", "own", "passed"),
    [
        (["build", "-n"], ["build"], ["-n"]),
        (["build", "-j", "2", "--forcerun", "mix"], ["build"], ["-j", "2", "--forcerun", "mix"]),
        (
            ["build", "-n", "--profile", "profiles/slurm", "build/data/mix.json"],
            ["build", "--profile", "profiles/slurm"],
            ["-n", "build/data/mix.json"],
        ),
        (
            ["build", "--params=p.yaml", "--allow-toolchain-mismatch", "-np"],
            ["build", "--params=p.yaml", "--allow-toolchain-mismatch"],
            ["-np"],
        ),
        (
            ["build", "--params", "p.yaml", "--", "--params", "x"],
            ["build", "--params", "p.yaml"],
            ["--params", "x"],
        ),
        (["build"], ["build"], []),
        (["validate", "-n"], ["validate", "-n"], None),  # other commands: argparse as ever
    ],
)
def test_the_command_line_is_split_as_typed(argv, own, passed):
    assert split_command_line(argv) == (own, passed)


def test_what_builds_nothing():
    assert builds_nothing(["-n"]) and builds_nothing(["-np"]) and builds_nothing(["--dry-run"])
    assert builds_nothing(["--summary"]) and builds_nothing(["-j", "2", "--dag"])
    assert not builds_nothing(["-j", "2", "--forcerun", "mix"])
    assert not builds_nothing(["build/data/n.json", "--nolock"])


class Ran:
    """Stands in for subprocess.run: records the command, writes nothing."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(self, command, check=False):  # type: ignore[no-untyped-def]
        self.commands.append(list(command))
        return subprocess.CompletedProcess(command, 0)


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Ran:
    record = Ran()
    monkeypatch.setattr(build.subprocess, "run", record)
    monkeypatch.setattr(build, "_check_build_toolchain", lambda allow: 0)
    monkeypatch.chdir(tmp_path)
    return record


def _params(tmp_path: Path) -> str:
    from hostile import project

    return str(project(tmp_path))


@pytest.mark.parametrize(
    "extra",
    [["-n"], ["-j", "2", "--forcerun", "mix"], ["build/data/mix.json", "-n"], ["-np"]],
)
def test_snakemake_gets_its_arguments_as_typed(ran, tmp_path, capsys, extra):
    params = _params(tmp_path)
    assert cli.main(["build", *extra, "--params", params]) == 0
    (command,) = ran.commands
    assert command[1:] == ["--profile", "profiles/local", "--configfile", params, *extra]
    out = capsys.readouterr().out
    assert "labmake: built" not in out  # nothing was built (and -n builds nothing)


def test_a_double_dash_hands_everything_after_it_to_snakemake(ran, tmp_path):
    params = _params(tmp_path)
    assert cli.main(["build", "--params", params, "--", "--profile", "x", "-n"]) == 0
    assert ran.commands[0][-3:] == ["--profile", "x", "-n"]


def test_help_is_labmake_s_and_names_the_pass_through(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["build", "-h"])
    assert done.value.code == 0
    assert "snakemake arguments" in capsys.readouterr().out


def test_labmake_build_dry_run_prints_what_would_run(tmp_path: Path):
    """The real command on a copy of the project: Snakemake's dry run, through labmake."""
    for name in ("Snakefile", "rules", "scripts", "profiles"):
        source = REPO / name
        target = tmp_path / name
        if source.is_dir():
            import shutil

            shutil.copytree(source, target)
        else:
            target.write_bytes(source.read_bytes())
    from hostile import SKILL, SKILL_LEAF, project

    project(tmp_path, {SKILL_LEAF: SKILL}, taxonomy={"root": "taxonomy"})
    result = subprocess.run(
        [LABMAKE, "build", "-n", "--allow-toolchain-mismatch"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    assert "unrecognized arguments" not in text and "This was a dry-run" in text
    assert "rule seeds" in text or "seeds " in text
    assert "labmake: built" not in text and not (tmp_path / "build").exists()
