from pathlib import Path

import pytest
import yaml

from labmake.core import config
from labmake.core.config import ConfigError, PhaseConfig

ROOT = Path(__file__).resolve().parents[2]


def raw_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_params_load_into_typed_config():
    cfg = config.load(ROOT / "params.yaml")
    assert cfg.student.gguf is None and cfg.teacher.gguf is None  # the embedded default
    assert [p.name for p in cfg.train.phases] == ["knowledge", "skills"]
    assert isinstance(cfg.train.phases[0], PhaseConfig)
    assert isinstance(cfg.train.phases[0].learning_rate, float)
    assert cfg.train.phases[0].lora.target_modules[:4] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert set(cfg.export.quantizations) >= {"Q4_K_M", "Q8_0"}


def test_dvc_exp_style_float_strings_are_coerced():
    raw = raw_params()
    raw["train"]["phases"][0]["learning_rate"] = "5e-05"  # how `dvc exp` rewrites 5.0e-5
    cfg = config.validate(raw)
    assert cfg.train.phases[0].learning_rate == pytest.approx(5e-5)


def test_schema_errors_name_the_key():
    raw = raw_params()
    raw["teacher"]["n_parallel"] = 0
    raw["export"]["quantizations"] = ["Q3_WRONG"]
    with pytest.raises(ConfigError) as err:
        config.validate(raw)
    message = str(err.value)
    assert "teacher.n_parallel" in message and "export.quantizations" in message


def test_a_key_an_earlier_labmake_read_is_refused_with_its_fix():
    raw = raw_params()
    raw["generate"]["grounded"]["questions_per_context"] = 2
    with pytest.raises(ConfigError) as err:
        config.validate(raw)
    message = str(err.value)
    assert "generate.grounded.questions_per_context" in message
    assert "contexts_per_request" in message and "delete questions_per_context" in message


def test_repeated_phase_names_are_refused():
    raw = raw_params()
    raw["train"]["phases"][1]["name"] = raw["train"]["phases"][0]["name"]
    with pytest.raises(ConfigError, match="repeated names"):
        config.validate(raw)


def test_section_round_trips_what_snakemake_passes():
    raw = raw_params()
    phase = config.section(PhaseConfig, raw["train"]["phases"][1], "train.phases")
    assert phase.name == "skills" and phase.replay_ratio == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="unknown key"):
        config.section(PhaseConfig, {**raw["train"]["phases"][1], "phase2_lr": 1}, "train.phases")


def test_missing_file_message(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "nope.yaml")
