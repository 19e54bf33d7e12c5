"""labmake: compile a taxonomy of seed examples into a fine-tuned, quantized GGUF model."""

import os

# OpenMP threads that spin-wait slowed llama.cpp and torch 10-100x on a shared 2-core machine
# (measured); this must be set before either library is imported, and labmake is imported first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def __getattr__(name: str) -> str:
    # Looked up on first use only: importlib.metadata costs tens of ms on every `labmake validate`.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("labmake")
        except PackageNotFoundError:  # a source tree that was not installed
            return "0+unknown"
    raise AttributeError(f"module 'labmake' has no attribute {name!r}")
