"""Atomic writes: all or nothing, and the permissions an ordinary write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labmake.core import artifacts


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_file_gets_the_umask_permissions_not_private_ones(tmp_path: Path, umask_022):
    target = tmp_path / "out" / "data.json"
    artifacts.write_json(target, {"b": 1, "a": [2]})
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["data.json"]  # no temp file left


def test_atomic_dir_gets_the_umask_permissions_and_replaces_the_old(tmp_path: Path, umask_022):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with artifacts.atomic_dir(target) as tmp:
        (tmp / "new.bin").write_text("new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in target.iterdir()) == ["new.bin"]


def test_failed_atomic_dir_leaves_the_old_folder(tmp_path: Path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with pytest.raises(RuntimeError), artifacts.atomic_dir(target) as tmp:
        (tmp / "half.bin").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (target / "old.bin").read_text() == "old"
