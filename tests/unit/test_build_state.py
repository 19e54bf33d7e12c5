"""A no-op `labmake build` starts no Snakemake; a one-leaf edit validates that leaf only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labmake.cli import build_checks, build_state

REPO = Path(__file__).resolve().parents[2]
LEAF = """\
version: 2
created_by: someone
task_description: Rhymes for a word.
seed_examples:
{examples}
"""


def write_leaf(root: Path, name: str, word: str = "cat") -> None:
    examples = "".join(
        f"  - question: Give a word that rhymes with {word}{i}.\n"
        f"    answer: A word that rhymes with {word}{i} is hat{i}.\n"
        for i in range(5)
    )
    folder = root / "taxonomy/compositional_skills/test" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qna.yaml").write_text(LEAF.format(examples=examples))


@pytest.fixture()
def project(tmp_path: Path) -> build_state.Inputs:
    for name in ("a", "b"):
        write_leaf(tmp_path, name)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "profiles/local").mkdir(parents=True)
    (tmp_path / "profiles/local/config.yaml").write_text("cores: 2\n")
    (tmp_path / "code").mkdir()
    (tmp_path / "code/mod.py").write_text("x = 1\n")
    (tmp_path / "build/model").mkdir(parents=True)
    (tmp_path / "build/model/model.gguf").write_bytes(b"GGUF")
    return build_state.Inputs(
        project=tmp_path,
        params=tmp_path / "params.yaml",
        taxonomy=tmp_path / "taxonomy",
        profile=tmp_path / "profiles/local",
        code=tmp_path / "code",
    )


def test_nothing_changed_until_an_input_or_an_output_does(project: build_state.Inputs):
    root = project.project
    assert not build_state.unchanged_since_last_build(project)  # never built
    build_state.record_build(project)
    assert build_state.unchanged_since_last_build(project)
    # Logs and the try corner are not outputs: writing them changes nothing.
    (root / "build/logs").mkdir()
    (root / "build/logs/x.log").write_text("log\n")
    assert build_state.unchanged_since_last_build(project)

    def changes(path: Path, edit) -> None:
        edit(path)
        assert not build_state.unchanged_since_last_build(project), path
        build_state.record_build(project)
        assert build_state.unchanged_since_last_build(project)

    qna = root / "taxonomy/compositional_skills/test/a/qna.yaml"
    changes(qna, lambda p: p.write_text(p.read_text() + "# edited\n"))
    changes(qna, lambda p: os.utime(p, ns=(1, 1)))  # touched: Snakemake decides
    changes(root / "params.yaml", lambda p: p.write_text(p.read_text() + "\n"))
    changes(root / "code/mod.py", lambda p: p.write_text("x = 2\n"))
    changes(root / "build/model/model.gguf", lambda p: p.unlink())
    changes(root / "taxonomy", lambda p: write_leaf(root, "c"))


def test_a_build_validates_only_the_leaves_that_changed(
    project: build_state.Inputs, monkeypatch, capsys
):
    root = project.project
    checked: list[list[Path]] = []
    real = build_checks.run_validate

    def spy(paths, **kwargs):
        checked.append([Path(p) for p in paths])
        return real(paths, **kwargs)

    monkeypatch.setattr(build_checks, "run_validate", spy)
    run = lambda: build_checks.validate_changed(project.taxonomy, project.params, root)  # noqa: E731
    assert run() == 0 and len(checked[-1]) == 2
    assert run() == 0 and len(checked) == 1  # nothing changed: nothing checked
    assert "2 unchanged leaves" in capsys.readouterr().err
    write_leaf(root, "b", word="dog")
    assert run() == 0 and [p.parent.name for p in checked[-1]] == ["b"]
    # A broken leaf fails the build and is checked again next time.
    qna = root / "taxonomy/compositional_skills/test/a/qna.yaml"
    qna.write_text("version: 2\nseed_examples: [\n")
    assert run() != 0
    assert run() != 0 and [p.parent.name for p in checked[-1]] == ["a"]
