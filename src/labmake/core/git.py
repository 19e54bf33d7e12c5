"""The one way labmake runs git.

Every caller gets the same treatment: output captured, a time limit, and an exception that
says in words why git could not give an answer (not installed, no answer in time). A git
command that runs and fails is an answer, not an error: its exit status and stderr are the
caller's to judge, since "not a repository" or "no such ref" is often the expected reply.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Long enough for any local query on a large repository; network fetches pass their own.
GIT_TIMEOUT_S = 30


class GitError(RuntimeError):
    """git could not be run or did not finish in time; the message says which."""


def run_git(
    *args: str,
    repo: Path | str | None = None,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = GIT_TIMEOUT_S,
    text: bool = True,
) -> subprocess.CompletedProcess[Any]:
    """``git [-C repo] ARGS`` with stdout and stderr captured; never raises on a non-zero exit.

    ``repo`` goes to git as ``-C``, so a missing folder is git's own complaint (exit 128), not
    a failure to start git. ``cwd`` runs git in that folder instead. ``timeout=None`` waits as
    long as git takes (commits and checkouts run the project's hooks and filters).
    ``text=False`` returns bytes, for file contents read from the object store.
    """
    command = ["git", *(["-C", str(repo)] if repo is not None else []), *args]
    try:
        return subprocess.run(
            command,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        if cwd is not None and not Path(cwd).is_dir():
            raise GitError(f"cannot run git in {cwd}: no such folder") from None
        raise GitError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {' '.join(args)}` did not finish in {timeout:g} s") from None
