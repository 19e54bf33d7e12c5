"""GPU knobs where llama.cpp runs (teacher, GGUF answers, chat, serve) and the jobs asking for a
GPU, checked without one: loads are recorded, not made."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
import yaml

from labmake import cli
from labmake.core import config, llama
from labmake.core.config import ConfigError, EvaluateConfig, TeacherConfig
from labmake.evaluation.gguf_eval import open_evaluator
from labmake.teacher import llamacpp
from labmake.teacher.cache import request_key
from labmake.teacher.llamacpp import BatchedLlamaCppTeacher, LlamaCppTeacher

REPO = Path(__file__).resolve().parents[2]
RUNTIME = "llama-cpp-python 0.0.0-test"


class FakeLlama:
    """What the loads here use of ``llama_cpp.Llama``: enough for constructors."""

    model = object()
    metadata: dict[str, str] = {}

    def tokenize(self, text: bytes, **_: Any) -> list[int]:
        return list(range(len(text.split())))

    def reset(self) -> None:
        pass

    def create_chat_completion(self, **_: Any) -> dict[str, Any]:
        return {
            "choices": [{"message": {"content": " an answer "}}],
            "usage": {"completion_tokens": 2},
        }

    def close(self) -> None:
        pass


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every open_llama call's keyword arguments; no llama.cpp is loaded."""
    calls: list[dict[str, Any]] = []

    def record(path: Any, **kwargs: Any) -> FakeLlama:
        calls.append(kwargs)
        return FakeLlama()

    monkeypatch.setattr(llama, "open_llama", record)
    monkeypatch.setattr(llamacpp, "llama_runtime", lambda: RUNTIME)
    # The batched teacher's own context is made through the C API: a stand-in module here.
    monkeypatch.setitem(sys.modules, "llama_cpp", mock.MagicMock())
    return calls


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "teacher.gguf"
    path.write_bytes(b"GGUF not a real model")
    return path


def teacher(kind: type[LlamaCppTeacher], path: Path, **kw: Any) -> LlamaCppTeacher:
    return kind(TeacherConfig(gguf=str(path), n_parallel=4, **kw), path)


@pytest.mark.parametrize("kind", [LlamaCppTeacher, BatchedLlamaCppTeacher])
@pytest.mark.parametrize("layers", [0, 7, -1])
def test_teacher_loads_its_gguf_with_n_gpu_layers(loads, gguf, kind, layers):
    t = teacher(kind, gguf, n_gpu_layers=layers)
    t.close()
    assert [call["n_gpu_layers"] for call in loads] == [layers]


@pytest.mark.parametrize(
    ("kind", "decoder"), [(LlamaCppTeacher, "single"), (BatchedLlamaCppTeacher, "batched-4")]
)
def test_cpu_teacher_keeps_the_cache_keys_it_had(loads, gguf, kind, decoder):
    # The sampling mapping as it was before teacher.n_gpu_layers: caches built then stay valid.
    before = {
        "decoder": decoder,
        "temperature": 0.7,
        "top_p": 0.95,
        "repeat_penalty": 1.1,
        "runtime": RUNTIME,
    }
    cpu = teacher(kind, gguf)
    gpu = teacher(kind, gguf, n_gpu_layers=-1)
    assert cpu.sampling == before
    assert gpu.sampling == {**before, "n_gpu_layers": -1}

    def key(t: LlamaCppTeacher) -> str:
        return request_key(t.identity, t.sampling, "Why is the sky blue?", 7, 64, ("\n\n",))

    assert key(cpu) == request_key(cpu.identity, before, "Why is the sky blue?", 7, 64, ("\n\n",))
    assert key(gpu) != key(cpu)
    assert key(teacher(kind, gguf, n_gpu_layers=8)) not in {key(cpu), key(gpu)}


def test_n_gpu_layers_accepts_minus_one_and_refuses_less():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert (
        config.validate(raw).teacher.n_gpu_layers == config.validate(raw).evaluate.n_gpu_layers == 0
    )
    raw["teacher"]["n_gpu_layers"] = -1
    raw["evaluate"]["n_gpu_layers"] = 12
    cfg = config.validate(raw)
    assert (cfg.teacher.n_gpu_layers, cfg.evaluate.n_gpu_layers) == (-1, 12)
    raw["teacher"]["n_gpu_layers"] = raw["evaluate"]["n_gpu_layers"] = -2
    with pytest.raises(ConfigError) as err:
        config.validate(raw)
    assert "teacher.n_gpu_layers" in str(err.value) and "evaluate.n_gpu_layers" in str(err.value)


@pytest.mark.parametrize("layers", [0, -1])
def test_gguf_evaluation_loads_with_evaluate_n_gpu_layers(loads, monkeypatch, gguf, layers):
    monkeypatch.setattr(llama, "open_vocab", lambda path: FakeLlama())
    items = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    ]
    open_evaluator(gguf, items, EvaluateConfig(n_gpu_layers=layers)).close()
    assert [call["n_gpu_layers"] for call in loads] == [layers]


@pytest.mark.parametrize(("flag", "layers"), [([], 0), (["--n-gpu-layers", "-1"], -1)])
def test_chat_passes_n_gpu_layers(loads, monkeypatch, gguf, flag, layers):
    monkeypatch.setattr(sys, "stdin", io.StringIO("/exit\n"))
    assert cli.main(["chat", str(gguf), *flag]) == 0
    assert [call["n_gpu_layers"] for call in loads] == [layers]


def test_chat_and_serve_refuse_fewer_than_minus_one(gguf, capsys):
    for command in ("chat", "serve"):
        with pytest.raises(SystemExit) as exc:
            cli.main([command, str(gguf), "--n-gpu-layers", "-2"])
        assert exc.value.code == 2 and "--n-gpu-layers" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "layers"), [([], "0"), (["--n-gpu-layers", "-1"], "-1")])
def test_serve_passes_n_gpu_layers_to_the_server(monkeypatch, gguf, flag, layers):
    commands: list[list[str]] = []

    def run(command: list[str], **_: Any) -> SimpleNamespace:
        commands.append(command)
        return SimpleNamespace(returncode=0)

    monkeypatch.setattr(subprocess, "run", run)
    assert cli.main(["serve", str(gguf), *flag]) == 0
    (command,) = commands
    server_argv = command[command.index("labmake.core.llama") + 1 :]
    assert server_argv[server_argv.index("--n_gpu_layers") + 1] == layers
    # The real server's parser (its flags are its settings' fields) reads it as given.
    server_cli = pytest.importorskip("llama_cpp.server.cli")
    from llama_cpp.server.settings import Settings

    parser = argparse.ArgumentParser()
    server_cli.add_args_from_model(parser, Settings)
    parsed = parser.parse_args(server_argv)
    assert parsed.n_gpu_layers == int(layers) and parsed.model == str(gguf)


def test_gpu_zero_adds_no_gpus_to_the_slurm_submission():
    utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils")

    def job(**resources: Any) -> SimpleNamespace:
        return SimpleNamespace(resources=SimpleNamespace(get=resources.get, **resources))

    assert "--gpus" not in utils.set_gres_string(job(gpu=0))
    assert utils.set_gres_string(job(gpu=1)).strip() == "--gpus=1"


@pytest.mark.model
@pytest.mark.parametrize("n_parallel", [1, 3])
def test_real_llama_takes_the_knob(tiny_student_gguf: Path, n_parallel: int):
    # Without a GPU backend llama.cpp keeps every layer on the CPU: the same answers, other keys.
    llama_cpp = pytest.importorskip("llama_cpp")
    from labmake.teacher.complete import complete_all
    from labmake.teacher.protocol import Request
    from labmake.teacher.registry import open_teacher

    requests = [Request("The water cycle", 1, 8, ()), Request("Rain falls", 2, 8, ())]
    answers = {}
    for layers in (0, -1):
        cfg = TeacherConfig(
            gguf=str(tiny_student_gguf), n_ctx=256, n_parallel=n_parallel, n_gpu_layers=layers
        )
        t = open_teacher(cfg)
        try:
            answers[layers] = complete_all(t, requests, "gpu")
        finally:
            t.close()
    assert all(c.completion_tokens > 0 for c in answers[-1])
    if not llama_cpp.llama_supports_gpu_offload():
        assert answers[-1] == answers[0]
