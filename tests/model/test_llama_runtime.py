"""One way to load llama.cpp: the extra-buffer policy reaches every load, whatever the CPU.

The policy is decided from the linked build's features, so these tests feed it feature strings
(with and without AMX) instead of depending on the machine they run on, and check the params the
loads actually used.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from labmake.core import llama as runtime

pytestmark = pytest.mark.model

REPO = Path(__file__).resolve().parents[2]
NATIVE_AMX = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 |"
PORTABLE = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | REPACK = 1 |"


def test_extra_buffers_are_refused_exactly_when_the_build_has_amx_kernels():
    assert not runtime.extra_buffers_allowed(NATIVE_AMX)
    assert not runtime.extra_buffers_allowed("CPU : AMX_BF16 = 1 | AMX_TILE = 1")
    assert runtime.extra_buffers_allowed(PORTABLE)
    assert runtime.extra_buffers_allowed("CPU : AMX_INT8 = 0 | REPACK = 1")


@pytest.mark.parametrize(("features", "allowed"), [(NATIVE_AMX, False), (PORTABLE, True)])
def test_every_kind_of_load_carries_the_policy(
    features: str, allowed: bool, tiny_student_gguf: Path, monkeypatch
):
    monkeypatch.setattr(runtime, "system_info", lambda: features)
    llm = runtime.open_llama(tiny_student_gguf, n_ctx=64, n_threads=1)
    try:
        assert llm.model_params.use_extra_bufts is allowed
        assert llm.create_completion("a", max_tokens=2, temperature=0.0)["choices"]
    finally:
        llm.close()
    assert runtime.model_params(vocab_only=True).use_extra_bufts is allowed
    model = runtime.load_model(tiny_student_gguf, vocab_only=True)
    runtime.free_model(model)
    # llama-cpp-python's own server builds its Llama from the same defaults.
    import llama_cpp

    assert llama_cpp.llama_cpp.llama_model_default_params().use_extra_bufts is allowed


def test_a_missing_or_broken_file_is_one_message_naming_it(tmp_path: Path):
    with pytest.raises(runtime.LlamaLoadError, match="no such GGUF file"):
        runtime.open_llama(tmp_path / "absent.gguf")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(runtime.LlamaLoadError, match=str(broken)):
        runtime.open_llama(broken)
    with pytest.raises(runtime.LlamaLoadError, match=str(broken)):
        runtime.load_model(broken, vocab_only=True)


# What loads a model other than through labmake.core.llama.
_LOADERS = {"Llama", "llama_model_load_from_file", "llama_load_model_from_file"}


def _runs_server(node: ast.AST) -> bool:
    """A command line such as [python, "-m", "llama_cpp.server", ...]."""
    return isinstance(node, ast.List | ast.Tuple) and any(
        isinstance(e, ast.Constant) and e.value == "llama_cpp.server" for e in node.elts
    )


def _bypasses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llama_cpp"):
            found += [f"imports {a.name}" for a in node.names if a.name in _LOADERS]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _LOADERS
            and isinstance(node.value, ast.Name)
            and node.value.id.startswith("llama_cpp")
        ):
            found.append(f"calls llama_cpp.{node.attr}")
        elif _runs_server(node):
            found.append("runs llama_cpp.server")
    return [f"{path.relative_to(REPO)}:{what}" for what in found]


def test_no_code_loads_a_model_around_the_policy():
    """Production code, rule scripts, benchmarks and tests all load through one module."""
    allowed = {REPO / "src/labmake/core/llama.py", Path(__file__).resolve()}
    files = [
        p
        for folder in ("src", "scripts", "benchmarks", "tests")
        for p in sorted((REPO / folder).rglob("*.py"))
        if p.resolve() not in allowed
    ]
    assert len(files) > 50
    assert [b for p in files for b in _bypasses(p)] == []
    # The check itself finds what it should.
    probe = REPO / "src/labmake/core/llama.py"
    assert any("Llama" in b for b in _bypasses(probe))
