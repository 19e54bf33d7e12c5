"""llama.cpp, loaded one way wherever labmake runs a GGUF.

Every load -- the teacher, chunking's tokenizer, evaluation, the export check, ``labmake chat``
and ``labmake serve`` -- goes through this module, so one policy decides how llama.cpp places
the weights. The policy: llama.cpp's *extra buffer types* (weight repacking, and the AMX kernels
on Intel CPUs that have AMX) are used only when the linked build has no AMX kernels. Natively
built llama.cpp 0.3.35/0.3.36 crashes (SIGSEGV in ``ggml_backend_amx_mul_mat``) on the first
decode on such CPUs; ``make setup`` builds llama-cpp-python without AMX for that reason, and this
guard keeps a build made elsewhere (a site's own CUDA build, say) from reaching those kernels.

``Llama`` does not take ``use_extra_bufts`` as an argument; it reads
``llama_cpp.llama_model_default_params()``. :func:`install_policy` wraps that public function
once per process so that ``Llama`` and llama-cpp-python's server load with the policy too.
"""

from __future__ import annotations

import ctypes
import functools
import re
import sys
from pathlib import Path
from typing import Any

_AMX = re.compile(r"\bAMX\w* = 1\b")


class LlamaLoadError(ValueError):
    """llama.cpp could not load a GGUF; the message names the file."""


@functools.cache
def system_info() -> str:
    """llama.cpp's build features ("AVX2 = 1 | ... | REPACK = 1"), after backend init."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    return llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")


def extra_buffers_allowed(info: str) -> bool:
    """Whether extra buffer types are safe with a build whose features read ``info``."""
    return _AMX.search(info) is None


def _apply_policy(params: Any) -> Any:
    if not extra_buffers_allowed(system_info()):
        params.use_extra_bufts = False
    return params


@functools.cache
def install_policy() -> None:
    """Make llama-cpp-python's default model params carry the policy (once per process)."""
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params

    @functools.wraps(original)
    def with_policy() -> Any:
        return _apply_policy(original())

    bindings.llama_model_default_params = with_policy
    llama_cpp.llama_model_default_params = with_policy


def model_params(*, vocab_only: bool = False, n_gpu_layers: int = 0) -> Any:
    """``llama_model_params`` for a low-level load, with the policy applied."""
    import llama_cpp

    install_policy()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = vocab_only
    params.n_gpu_layers = n_gpu_layers
    return params


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise LlamaLoadError(f"{path}: no such GGUF file")


def open_llama(path: str | Path, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` (keyword arguments as Llama takes them), quiet."""
    path = Path(path)
    _check_file(path)
    install_policy()
    from llama_cpp import Llama

    kwargs.setdefault("verbose", False)
    try:
        return Llama(model_path=str(path), **kwargs)
    except (ValueError, OSError, RuntimeError) as exc:
        raise LlamaLoadError(f"{path}: llama.cpp could not load this GGUF ({exc})") from None


def open_vocab(path: str | Path) -> Any:
    """A ``Llama`` holding only ``path``'s vocabulary (tokenizing, no weights)."""
    return open_llama(path, vocab_only=True)


def load_model(path: str | Path, *, vocab_only: bool = False, n_gpu_layers: int = 0) -> Any:
    """A raw ``llama_model *`` through the public C API; free it with :func:`free_model`."""
    import llama_cpp

    path = Path(path)
    _check_file(path)
    params = model_params(vocab_only=vocab_only, n_gpu_layers=n_gpu_layers)
    model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if not model:
        raise LlamaLoadError(f"{path}: llama.cpp could not load this GGUF")
    return model


def free_model(model: Any) -> None:
    import llama_cpp

    llama_cpp.llama_model_free(model)


def build_id() -> str:
    """ggml's version and source commit as the linked library reports them."""
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("ggml-base.*"))
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(str(candidate))
            version, commit = lib.ggml_version, lib.ggml_commit
        except (OSError, AttributeError):
            continue
        version.restype = commit.restype = ctypes.c_char_p
        return f"ggml {version().decode()} ({commit().decode()})"
    return "unknown"


def serve(argv: list[str]) -> int:
    """llama-cpp-python's OpenAI-compatible server, loading models under the policy."""
    install_policy()
    from llama_cpp.server.__main__ import main

    sys.argv = ["labmake serve", *argv]
    main()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
