"""rules/code.smk: the code a rule runs, summed up in one file per rule script."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.stages import Job


def code_stamp(job: Job) -> None:
    """build/code/{script}.sha256: one ``sha256  path`` line per file the script runs, paths
    relative to the package's folder (or the project), so two clones write the same bytes."""
    from labmake.core import artifacts
    from labmake.core.code_inputs import PACKAGE_DIR

    with logs.stage(job.log[0], "code_stamp"):
        entries = []
        for name in job.input:
            path = Path(name)
            resolved = path.resolve()
            shown = (
                resolved.relative_to(PACKAGE_DIR.parent).as_posix()
                if resolved.is_relative_to(PACKAGE_DIR.parent)
                else path.as_posix()
            )
            entries.append((shown, artifacts.sha256_file(path)))
        text = "".join(f"{digest}  {shown}\n" for shown, digest in sorted(entries))
        artifacts.write_text_atomic(job.output[0], text)
