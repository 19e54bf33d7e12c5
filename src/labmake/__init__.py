"""labmake: compile a taxonomy of seed examples into a fine-tuned, quantized GGUF model."""

import os
from importlib.metadata import PackageNotFoundError, version

# OpenMP threads that spin-wait slow llama.cpp and torch 10-100x on a shared 2-core machine
# (FIELD-NOTES); this must be set before either library is imported, and labmake is imported first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("labmake")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
