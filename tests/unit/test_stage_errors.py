"""A rule's expected failures reach the user as one message, never a traceback."""

import subprocess
import sys
import textwrap

import pytest


@pytest.mark.parametrize(
    "raise_it, expected",
    [
        (
            "from labmake.taxonomy.findings import TaxonomyError; raise TaxonomyError('x/qna.yaml: broken')",
            "x/qna.yaml: broken",
        ),
        (
            "from labmake.sdg.filters import EmptyLeafError; raise EmptyLeafError('kept 0 of 9')",
            "kept 0 of 9",
        ),
        (
            "from labmake.teacher.protocol import TeacherError; raise TeacherError('t.gguf: cannot load')",
            "t.gguf: cannot load",
        ),
    ],
)
def test_stage_turns_expected_errors_into_a_message(tmp_path, raise_it, expected):
    log = tmp_path / "rule.log"
    code = textwrap.dedent(f"""
        from labmake.core import logs
        with logs.stage({str(log)!r}, "seeds"):
            {raise_it}
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert f"labmake seeds: error: {expected}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" in log.read_text()  # kept for a bug report, in the rule's log
