"""Hostile or careless taxonomy files and folders: reported by `validate`, refused before the
build, never "a bug in labmake" and never a Snakemake error in Snakemake's words."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hostile import SKILL, SKILL_LEAF, project, put

from labmake import cli
from labmake.cli.plan import run_plan
from labmake.cli.validate import run_validate
from labmake.taxonomy.check import validate_leaf
from labmake.taxonomy.findings import TaxonomyError
from labmake.taxonomy.leaf_names import MAX_LEAF_CHARS, leaf_name_problem
from labmake.taxonomy.scan import find_leaves
from labmake.training.student import StudentError, convert_gguf_to_hf

BAD_NAMES = [
    ("compositional_skills/po{ems}", "contains '{' or '}', which Snakemake reads as a wildcard"),
    ("compositional_skills/poems}", "contains '{' or '}'"),
    ("compositional_skills/po\nems", "control character U+000A (LINE FEED)"),
    ("compositional_skills/po\x1b[2Jems", "control character U+001B"),
    ("compositional_skills/po\tems", "control character U+0009"),
    ("compositional_skills/" + "p" * 250, f"over the {MAX_LEAF_CHARS} labmake allows"),
    ("compositional_skills/x_" + "la" * 25, "ends in 'la' repeated 25 times"),
    ("compositional_skills/" + "\u00e9" * 120, "bytes, over the 200 labmake allows"),
]


@pytest.mark.parametrize(("leaf", "rule"), BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_names_snakemake_cannot_carry_are_refused_with_the_rule(tmp_path: Path, leaf, rule):
    put(tmp_path, leaf, SKILL)
    errors = [f for f in validate_leaf(tmp_path, leaf) if f.level == "error"]
    assert len(errors) == 1 and rule in errors[0].message, errors
    assert "\n" not in errors[0].path and "\x1b" not in errors[0].path  # shown escaped
    with pytest.raises(TaxonomyError, match="security|leaf name|folder name") as caught:
        find_leaves(tmp_path)  # what plan, diff and the Snakefile call
    assert rule.split(" (")[0] in str(caught.value)


def test_a_250_character_name_fails_validate_not_snakemake(tmp_path: Path, capsys):
    leaf = "compositional_skills/" + "/".join(f"folder_{i}_" + "x" * 50 for i in range(4))
    put(tmp_path, leaf, SKILL)
    args = dict(ilab_strict=False, fmt="text", params_path=None)
    assert run_validate([tmp_path], **args) == 1
    assert f"{len(leaf)} characters long, over the 200" in capsys.readouterr().out


def test_good_names_pass():
    for leaf in (
        "knowledge/science/water_cycle",
        "compositional_skills/a-b_c/d e",
        "x/" + "a" * 19,
    ):
        assert leaf_name_problem(leaf) is None


def test_a_qna_yaml_that_is_a_folder_is_reported_not_skipped(tmp_path: Path, capsys):
    put(tmp_path, SKILL_LEAF, SKILL)
    (tmp_path / "compositional_skills" / "other" / "qna.yaml").mkdir(parents=True)
    assert run_validate([tmp_path], ilab_strict=False, fmt="text", params_path=None) == 1
    assert "qna.yaml is a folder, not a file" in capsys.readouterr().out
    with pytest.raises(TaxonomyError, match="qna.yaml is a folder"):
        find_leaves(tmp_path)


@pytest.mark.parametrize(
    ("char", "name"),
    [
        ("\u200b", "ZERO WIDTH SPACE"),
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ],
)
def test_invisible_characters_warn_and_strict_limits_refuse(tmp_path: Path, char, name):
    put(tmp_path, SKILL_LEAF, SKILL.replace("gulls call", f"gulls{char} call", 1))
    (finding,) = validate_leaf(tmp_path, SKILL_LEAF)
    assert finding.level == "warning" and name in finding.message
    assert finding.yaml_path == "seed_examples[0].answer" and finding.line == 6
    (strict,) = validate_leaf(tmp_path, SKILL_LEAF, strict_limits=True)
    assert strict.level == "error"


@pytest.mark.parametrize(
    ("char", "name"), [("\x1b", "ESC"), ("\x07", "BEL"), ("\x08", "backspace")]
)
def test_terminal_control_characters_are_an_input_problem_not_a_bug(tmp_path, char, name):
    put(tmp_path, SKILL_LEAF, SKILL.replace("tester", f"tes{char}[31mter"))
    (finding,) = validate_leaf(tmp_path, SKILL_LEAF)
    assert finding.source == "yaml" and finding.level == "error"
    assert f"invisible character U+{ord(char):04X} ({name})" in finding.message
    assert (finding.line, finding.col) == (2, 16)
    assert "bug in labmake" not in finding.hint


def test_plan_exits_non_zero_when_it_cannot_price_a_leaf(tmp_path: Path, capsys):
    broken = SKILL.replace("task_description: Write a short poem about a place.\n", "")
    params = project(tmp_path, {SKILL_LEAF: SKILL, "compositional_skills/broken": broken})
    assert run_plan(params, build_dir=tmp_path / "build") == 1
    out, err = capsys.readouterr()
    assert "compositional_skills/broken" in out and "cannot estimate" in out
    assert "1 leaf/leaves could not be priced (compositional_skills/broken)" in err
    assert cli.main(["plan", "--params", str(params), "--format", "json"]) == 1


def test_plan_refuses_a_leaf_name_snakemake_cannot_carry(tmp_path: Path, capsys):
    params = project(tmp_path, {"compositional_skills/a{b}": SKILL})
    assert run_plan(params, build_dir=tmp_path / "build") == 2
    assert "contains '{' or '}'" in capsys.readouterr().err


def _tiny_gguf(path: Path) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("token_embd.weight", np.ones((64, 256), dtype=np.float32))
    writer.add_tensor("output.weight", np.ones((64, 256), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_truncated_student_gguf_blames_the_file(tmp_path: Path):
    path = _tiny_gguf(tmp_path / "student.gguf")
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size - 1000)
    with pytest.raises(StudentError, match=r"the file is truncated: its tensors need") as caught:
        convert_gguf_to_hf(path, tmp_path / "out", use_cache=False)
    assert "download or copy it again" in str(caught.value)
    assert "architecture" not in str(caught.value)
    with open(path, "r+b") as fh:
        fh.truncate(40)  # inside the header
    with pytest.raises(StudentError, match=r"truncated or damaged"):
        convert_gguf_to_hf(path, tmp_path / "out", use_cache=False)


def test_a_whole_gguf_passes_the_completeness_check(tmp_path: Path):
    from labmake.export.metadata import check_complete

    path = _tiny_gguf(tmp_path / "whole.gguf")
    check_complete(path)
    assert struct.unpack("<4s", path.read_bytes()[:4]) == (b"GGUF",)
