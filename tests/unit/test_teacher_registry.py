"""The teacher registry: backends register themselves; the fake comes in only as a plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from labmake.core.config import TeacherConfig
from labmake.teacher import registry
from labmake.teacher.protocol import TeacherError
from labmake.testing.fake_teacher import FakeTeacher

ALONE = """
import json, sys
from labmake.core.config import TeacherConfig
from labmake.sdg import generation  # noqa: F401  (what the generate stage imports)
from labmake.teacher import registry
try:
    registry.open_teacher(TeacherConfig(backend="fake-for-tests"))
    error = None
except registry.TeacherError as exc:
    error = str(exc)
testing = sorted(m for m in sys.modules if m.startswith("labmake.testing"))
print(json.dumps({"names": registry.names(), "error": error, "testing": testing}))
"""


def test_production_registers_the_shipped_backends_and_never_the_fake():
    env = {k: v for k, v in os.environ.items() if k != registry.PLUGINS_ENV}
    done = subprocess.run(
        [sys.executable, "-c", ALONE], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(done.stdout)
    assert out["names"] == ["llama-cpp", "openai"] and out["testing"] == []
    assert out["error"] == (
        "params.yaml: unknown teacher.backend 'fake-for-tests'; use llama-cpp or openai"
    )


def test_the_tests_plugin_registers_the_fake():
    assert os.environ[registry.PLUGINS_ENV] == "labmake.testing.fake_teacher"
    assert registry.names() == ["fake-for-tests", "llama-cpp", "openai"]
    teacher = registry.open_teacher(TeacherConfig(backend="fake-for-tests"))
    assert isinstance(teacher, FakeTeacher)
    with pytest.raises(TeacherError, match=r"'nope'; use fake-for-tests, llama-cpp or openai$"):
        registry.open_teacher(TeacherConfig(backend="nope"))


def test_a_plugin_that_does_not_import_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, "labmake.testing.fake_teacher, labmake_no_such_plugin")
    with pytest.raises(TeacherError) as err:
        registry.open_teacher(TeacherConfig(backend="fake-for-tests"))
    message = str(err.value)
    assert message.startswith("LABMAKE_TEACHER_PLUGINS: cannot import the teacher plugin module")
    assert "'labmake_no_such_plugin'" in message


def test_two_backends_cannot_share_a_name(monkeypatch):
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry.register("fake-for-tests", FakeTeacher)  # the same one again (a re-import): fine
    with pytest.raises(TeacherError, match="registered twice"):
        registry.register("fake-for-tests", lambda cfg: FakeTeacher(cfg))
