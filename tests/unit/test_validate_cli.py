"""`labmake validate` as a user runs it: exit codes, text and JSON output, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SKILL = (
    "version: 3\ncreated_by: tester\ntask_description: Write a poem.\nseed_examples:\n"
    + "".join(f"  - question: Write poem {i}.\n    answer: Poem {i}.\n" for i in range(5))
)
LEAF = "compositional_skills/writing/poems"
BROKEN_LEAF = "compositional_skills/writing/broken"


def labmake() -> list[str]:
    script = Path(sys.executable).with_name("labmake")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labmake.cli"]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*labmake(), "validate", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.fixture
def taxonomy(tmp_path: Path) -> Path:
    root = tmp_path / "taxonomy"
    (root / LEAF).mkdir(parents=True)
    (root / LEAF / "qna.yaml").write_text(SKILL)
    return root


def break_one(root: Path) -> Path:
    (root / BROKEN_LEAF).mkdir(parents=True)
    path = root / BROKEN_LEAF / "qna.yaml"
    path.write_text(SKILL.replace("created_by: tester\n", "").replace("Poem 3.", "''"))
    return path


def test_valid_taxonomy_exits_0(taxonomy: Path) -> None:
    result = run(str(taxonomy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 file checked, 0 invalid; 0 errors, 0 warnings" in result.stdout


def test_invalid_taxonomy_exits_1_with_grouped_findings(taxonomy: Path) -> None:
    broken = break_one(taxonomy)
    result = run(str(taxonomy))
    assert result.returncode == 1
    out = result.stdout
    assert f"{broken}: invalid (2 errors)" in out
    assert "the file is missing `created_by`" in out
    assert "[seed_examples[3].answer] `seed_examples[3].answer` is empty" in out
    assert "fix: add `created_by:`" in out
    assert "2 files checked, 1 invalid; 2 errors, 0 warnings" in out
    assert str(taxonomy / LEAF) not in out  # clean files are not listed


def test_json_output_shape(taxonomy: Path) -> None:
    break_one(taxonomy)
    result = run("--format", "json", str(taxonomy))
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["mode"] == "labmake" and doc["valid"] is False
    assert doc["summary"] == {"files": 2, "invalid": 1, "errors": 2, "warnings": 0}
    files = {f["leaf"]: f for f in doc["files"]}
    assert files[LEAF]["valid"] is True and files[LEAF]["findings"] == []
    bad = files[BROKEN_LEAF]
    assert (bad["kind"], bad["version"], bad["valid"], bad["errors"]) == ("skill", 3, False, 2)
    finding = bad["findings"][1]
    assert set(finding) == {
        "path",
        "line",
        "col",
        "yaml_path",
        "level",
        "message",
        "hint",
        "source",
    }
    assert finding["yaml_path"] == "seed_examples[3].answer"
    assert (finding["line"], finding["col"], finding["level"], finding["source"]) == (
        11,
        13,
        "error",
        "schema",
    )


def test_a_qna_file_finds_its_taxonomy_root(taxonomy: Path) -> None:
    result = run("--format", "json", str(taxonomy / LEAF / "qna.yaml"))
    assert result.returncode == 0
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["leaf"] == LEAF and entry["kind"] == "skill"


def test_wrongly_named_file_is_an_error(taxonomy: Path) -> None:
    other = taxonomy / LEAF / "qna.yml"
    other.write_text(SKILL)
    result = run(str(other))
    assert result.returncode == 1
    assert "a taxonomy file must be named qna.yaml, not 'qna.yml'" in result.stdout
    # inside a taxonomy it is a warning: the file is simply not read
    result = run(str(taxonomy))
    assert result.returncode == 0
    assert "qna.yml is not read: a leaf's file must be named exactly qna.yaml" in result.stdout


def test_usage_errors_exit_2(tmp_path: Path, taxonomy: Path) -> None:
    result = run(str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr
    result = run("--params", str(tmp_path / "missing.yaml"), str(taxonomy))
    assert result.returncode == 2 and "no such file (--params)" in result.stderr
    result = run("--format", "xml", str(taxonomy))
    assert result.returncode == 2
    result = run(cwd=tmp_path)  # no PATH, no params.yaml here
    assert result.returncode == 2 and "no PATH given and no params.yaml" in result.stderr


def test_bad_params_is_a_usage_error(tmp_path: Path, taxonomy: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("teacher: {n_ctx: lots}\n")
    result = run("--params", str(params), str(taxonomy))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and str(params) in result.stderr


def test_default_path_and_context_budget_come_from_params(tmp_path: Path, taxonomy: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        textwrap.dedent("""\
        seed: 1
        taxonomy: {root: taxonomy}
        teacher: {n_ctx: 256, max_tokens: 200}
        """)
    )
    result = run(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no seed example fits in a teacher prompt" in result.stdout
    assert "teacher.n_ctx is 256 tokens" in result.stdout


def test_ilab_strict_flag(taxonomy: Path) -> None:
    (taxonomy / LEAF / "qna.yaml").write_text(SKILL + "\n")  # yamllint warning: empty-lines
    assert run(str(taxonomy)).returncode == 0
    result = run("--ilab-strict", str(taxonomy))
    assert result.returncode == 1
    assert "too many blank lines (1 > 0) (empty-lines)" in result.stdout


def test_hostile_inputs_never_show_a_traceback(tmp_path: Path) -> None:
    root = tmp_path / "taxonomy"
    contents: dict[str, bytes] = {
        "a": b"\xff\xfe\x00\x00garbage",
        "b": b"version: 3\nseed_examples: [[[[[[[[[[[[[[[\n",
        "c": b"version: !!python/name:os.system\n",
        "d": b"? [a]\n: b\n",
        "e": b"version: 3\nx: 0x" + b"1" * 6000 + b"\n",
        "f": b"--- a\n--- b\n",
        "g": "version: 3\ncreated_by: \u2028\x85\ufeff\n".encode(),
        "h": b"version: 3\ncreated_by: a\ntask_description: b\nseed_examples:\n  - {1: 2, true: 3}\n",
    }
    for name, content in contents.items():
        (root / "compositional_skills" / name).mkdir(parents=True)
        (root / "compositional_skills" / name / "qna.yaml").write_bytes(content)
    result = run(str(root))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert "could not check this file" not in result.stdout  # no internal error either
    assert f"{len(contents)} files checked, {len(contents)} invalid" in result.stdout


def test_validation_imports_only_light_modules(taxonomy: Path) -> None:
    code = textwrap.dedent(f"""
        import io, sys
        from pathlib import Path
        from labmake.cli.validate import run_validate
        assert run_validate([Path({str(taxonomy)!r})], ilab_strict=False, fmt="json",
                            params_path=None, out=io.StringIO()) == 0
        heavy = {{"torch", "transformers", "llama_cpp", "snakemake", "peft", "requests"}}
        print(sorted(heavy & set(sys.modules)))
        """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
