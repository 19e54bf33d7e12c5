"""What ``labmake build`` checks before it starts Snakemake, done once per change.

Validation of a taxonomy of thousands of leaves takes seconds per thousand; a leaf whose folder,
labmake's code and params.yaml are as when it last passed is not checked again, and a build whose
inputs and outputs are all as the last finished build left them does not start Snakemake.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import labmake
from labmake.cli import build_state
from labmake.cli.exit_codes import EXIT_USAGE
from labmake.cli.validate import run_validate, student_problem
from labmake.taxonomy.scan import QNA, scan


def validate_changed(taxonomy: Path, params: Path, project: Path) -> int:
    """Validate the leaves that changed since they last passed (all, after a code or params
    change, or when the tree itself has a problem); 0 when everything is valid."""
    leaves, problems = scan(taxonomy, hidden=True)
    if problems or not leaves:
        return run_validate([taxonomy], ilab_strict=False, fmt="text", params_path=params)
    context = hashlib.sha256(
        (
            build_state.code_signature(Path(labmake.__file__).parent)
            + build_state.signature([params], relative_to=project)
        ).encode()
    ).hexdigest()
    current = build_state.leaf_signatures(taxonomy, leaves, context)
    known = build_state.already_valid(project, current)
    changed = [leaf for leaf in leaves if leaf not in known]
    if changed:
        files = [taxonomy / leaf / QNA for leaf in changed]
        status = run_validate(files, ilab_strict=False, fmt="text", params_path=params)
        if status != 0:
            return status
    if known:
        print(
            f"labmake build: {len(known)} unchanged leaves passed validation before; not "
            "checked again",
            file=sys.stderr,
        )
    build_state.record_valid(project, current)
    return 0


def student_checked(params: Path) -> int:
    """Check params.yaml's student (a Hugging Face folder, a chat template) as `labmake
    validate` does; 0 when it can be tuned and exported, else the usage error, said."""
    problem = student_problem(params)
    if problem is None:
        return 0
    print(f"labmake build: error: {problem}", file=sys.stderr)
    return EXIT_USAGE
