"""A rule's code inputs are the import closure of the stage function its script calls."""

from __future__ import annotations

from pathlib import Path

from labmake.core import code_inputs

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src/labmake"


def files_of(rule: str) -> set[str]:
    return {
        str(Path(p).resolve().relative_to(PACKAGE))
        for p in code_inputs.for_script(REPO / f"scripts/{rule}.py")
    }


def test_a_rule_depends_on_what_its_stage_function_reaches_and_nothing_else():
    train = files_of("train")
    assert "stages/train.py" in train and "core/hashing.py" in train  # reached through training
    assert {"training/resume.py", "training/launch.py"} <= train
    # base_model shares the stage module but not the imports of the other functions in it.
    assert not any(p.startswith(("sdg/", "teacher/", "evaluation/", "taxonomy/")) for p in train)
    manifest = files_of("manifest")
    assert "evaluation/provenance.py" in manifest
    assert not any(p.startswith(("training/", "sdg/")) for p in manifest)


def test_data_files_of_the_packages_reached_come_with_them():
    generate = files_of("generate")
    assert any(p.startswith("sdg/pipelines/") and p.endswith(".yaml") for p in generate)
    assert any(p.startswith("sdg/prompts/") and p.endswith(".j2") for p in generate)
    assert any(p.startswith("taxonomy/schemas/") for p in files_of("seeds"))
    assert not any(p.startswith("sdg/") for p in files_of("seeds"))


def test_every_rule_script_is_derived(tmp_path: Path):
    for script in sorted((REPO / "scripts").glob("*.py")):
        found = code_inputs.for_script(script)
        assert found, script
        assert all(Path(p).is_file() for p in found)


def test_function_level_imports_are_followed_and_other_functions_are_not(tmp_path: Path):
    """The closure follows what one function imports, through any depth of modules."""
    stage = PACKAGE / "stages/train.py"
    own = code_inputs._function_imports(stage, "base_model")
    assert "labmake.training.student" in own and "labmake.training.launch" not in own
    deep = code_inputs.closure(code_inputs._function_imports(stage, "train"))
    assert "labmake.training.resume" in deep
