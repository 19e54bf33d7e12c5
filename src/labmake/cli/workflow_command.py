"""The Snakemake command line labmake runs: one place for ``labmake build`` and ``labmake plan``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def snakemake_command(profile: str, params: str, *args: str) -> list[str]:
    """``snakemake --profile PROFILE --configfile PARAMS ARGS...``, with the venv's snakemake
    when it is not on PATH (a venv used without activating it)."""
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).parent / "snakemake")
    return [snakemake, "--profile", profile, "--configfile", params, *args]
