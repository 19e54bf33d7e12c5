"""The openai teacher against a fault-injecting fake server: retries, clear failures, the key."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labmake.core import config
from labmake.core.config import TeacherConfig
from labmake.teacher.cache import RequestCache
from labmake.teacher.complete import complete_all
from labmake.teacher.openai_compat import OpenAITeacher, redact_url
from labmake.teacher.protocol import Request, TeacherError
from labmake.teacher.registry import open_teacher
from labmake.testing.fault_server import FaultServer, answer_text, scripted

KEY = "sk-test-7f3a9c1e5b2d4f60"
STOP = ("\nQ:",)


def teacher_for(server: FaultServer, **overrides) -> OpenAITeacher:
    cfg = TeacherConfig(
        backend="openai",
        base_url=server.url,
        model="tiny",
        timeout_s=overrides.pop("timeout_s", 5.0),
        max_retries=overrides.pop("max_retries", 3),
        concurrency=overrides.pop("concurrency", 2),
        **overrides,
    )
    teacher = open_teacher(cfg)
    assert isinstance(teacher, OpenAITeacher)
    teacher.backoff_s = 0.01  # keep the tests fast; the schedule still doubles
    return teacher


def reqs(n: int) -> list[Request]:
    return [Request(f"Q: question {i}?\nA:", 500 + i, 32, STOP) for i in range(n)]


def expected(request: Request) -> str:
    return answer_text(request.prompt, request.seed).split("\nQ:")[0]


@pytest.mark.parametrize("fault", ["500", "503", "429", "timeout", "malformed", "drop"])
def test_each_transient_fault_is_retried_until_the_answer_comes(fault: str, caplog):
    with FaultServer(scripted([fault, fault]), hang_s=1.0).running() as server:
        teacher = teacher_for(server, timeout_s=0.3, concurrency=1)
        [request] = reqs(1)
        with caplog.at_level(logging.WARNING):
            [out] = complete_all(teacher, [request], "t")
        teacher.close()
    assert out.text == expected(request) and out.finished and out.error is None
    assert len(server.received) == 3  # two failures, then the answer
    assert "retry 2 of 3" in caplog.text


def test_answers_are_cut_at_every_stop_and_the_seed_is_sent():
    with FaultServer(scripted([])).running() as server:
        teacher = teacher_for(server)
        many_stops = Request("Q: x?\nA:", 9, 16, ("\n\n", "###", "<end>", "zzz", "\nQ:"))
        [out] = complete_all(teacher, [many_stops], "t")
    # The server got the first four stops (the API's limit); the fifth is applied locally.
    assert server.received[0]["stop"] == ["\n\n", "###", "<end>", "zzz"]
    assert server.received[0]["seed"] == 9 and "\nQ:" not in out.text


def test_persistent_failure_is_one_clear_error_and_keeps_what_was_cached(tmp_path: Path):
    # Requests 0-3 succeed; from then on the server is down for good.
    def rule(n: int, _body: dict) -> str:
        return "ok" if n < 4 else "503"

    cache = RequestCache(tmp_path)
    with FaultServer(rule).running() as server:
        teacher = teacher_for(server, max_retries=2, concurrency=1)
        with pytest.raises(TeacherError) as err:
            complete_all(teacher, reqs(8), "t", cache=cache)
    message = str(err.value)
    assert server.url + "/completions" in message and "HTTP 503" in message
    assert "after 3 attempts" in message and "teacher.base_url" in message
    assert len(cache) == 4  # the answers that came before the outage are safe
    assert "Traceback" not in message and "\n" not in message


def test_resume_after_an_outage_sends_only_the_missing_requests(tmp_path: Path):
    cache = RequestCache(tmp_path)
    down = {"on": True}

    def rule(n: int, _body: dict) -> str:
        return "503" if down["on"] and n >= 3 else "ok"

    with FaultServer(rule).running() as server:
        with pytest.raises(TeacherError):
            complete_all(teacher_for(server, max_retries=1, concurrency=1), reqs(6), "t", cache)
        down["on"] = False
        before = len(server.received)
        out = complete_all(teacher_for(server, concurrency=3), reqs(6), "t", cache)
    assert len(server.received) - before == 3
    assert [c.text for c in out] == [expected(r) for r in reqs(6)]


def test_a_rejected_request_is_a_per_request_error_not_a_crash():
    def rule(_n: int, body: dict) -> str:
        return "400" if "question 1?" in body["prompt"] else "ok"

    with FaultServer(rule).running() as server:
        out = complete_all(teacher_for(server), reqs(3), "t")
    assert out[1].error and "HTTP 400" in out[1].error and out[1].text == ""
    assert out[0].error is None and out[2].error is None


def test_wrong_url_or_refused_key_fail_at_once_with_the_fix():
    with FaultServer(scripted(["404"])).running() as server:
        with pytest.raises(TeacherError, match=r"HTTP 404 .*teacher.base_url"):
            complete_all(teacher_for(server), reqs(1), "t")
        assert len(server.received) == 1  # not retried
    with (
        FaultServer(scripted(["401"])).running() as server,
        pytest.raises(TeacherError, match="teacher.api_key_env"),
    ):
        complete_all(teacher_for(server), reqs(1), "t")


def test_a_server_that_is_not_there_names_the_url():
    cfg = TeacherConfig(
        backend="openai", base_url="http://127.0.0.1:9/v1", model="m", max_retries=1
    )
    teacher = open_teacher(cfg)
    teacher.backoff_s = 0.01
    with pytest.raises(TeacherError, match=r"127.0.0.1:9/v1/completions.*connection failed"):
        complete_all(teacher, reqs(1), "t")


def test_concurrency_sends_several_requests_at_once_and_keeps_order():
    with FaultServer(lambda _n, _b: "slow", hang_s=0.3).running() as server:
        teacher = teacher_for(server, concurrency=4)
        out = complete_all(teacher, reqs(8), "t")
    assert [c.text for c in out] == [expected(r) for r in reqs(8)]
    assert sorted(b["seed"] for b in server.received) == [500 + i for i in range(8)]
    assert 2 <= server.max_in_flight <= 4


def test_chat_mode_sends_messages():
    with FaultServer(scripted([])).running() as server:
        teacher = teacher_for(server, chat=True)
        [out] = complete_all(teacher, reqs(1), "t")
    assert server.received[0]["messages"] == [{"role": "user", "content": reqs(1)[0].prompt}]
    assert out.text == expected(reqs(1)[0])


def test_the_api_key_is_sent_but_never_written_or_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LABMAKE_TEST_KEY", KEY)
    cache = RequestCache(tmp_path / "cache")
    with caplog.at_level(logging.DEBUG), FaultServer(scripted(["500", "404"])).running() as s:
        teacher = teacher_for(s, api_key_env="LABMAKE_TEST_KEY")
        with pytest.raises(TeacherError) as err:
            complete_all(teacher, reqs(1), "t", cache=cache)
        out = complete_all(teacher, reqs(2), "t", cache=cache)
    assert all(s.authorized)
    texts = [caplog.text, str(err.value), repr(teacher), teacher.identity, repr(out)]
    texts += [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]
    assert len(texts) > 5 and not any(KEY in t for t in texts)


def test_a_missing_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("LABMAKE_ABSENT_KEY", raising=False)
    cfg = TeacherConfig(
        backend="openai", base_url="http://x/v1", model="m", api_key_env="LABMAKE_ABSENT_KEY"
    )
    with pytest.raises(TeacherError, match="export LABMAKE_ABSENT_KEY="):
        open_teacher(cfg)


def test_missing_url_or_model_is_a_config_error():
    with pytest.raises(TeacherError, match="teacher.base_url"):
        open_teacher(TeacherConfig(backend="openai", model="m"))


def test_secrets_in_the_url_stay_out_of_identity():
    assert redact_url("https://user:pw@host:8443/v1/?key=abc") == "https://host:8443/v1"


def test_params_yaml_validates_the_openai_section():
    raw = {
        "seed": 1,
        "train": {"phases": [{"name": "knowledge", "dataset": "knowledge"}]},
        **{k: {} for k in ("taxonomy", "student", "seeds", "generate", "filter", "mix")},
        **{k: {} for k in ("export", "evaluate")},
    }
    raw["teacher"] = {
        "backend": "openai",
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "m",
        "api_key_env": "MY_KEY",
        "timeout_s": "30",
        "max_retries": 2,
        "concurrency": 8,
    }
    cfg = config.validate(raw).teacher
    assert (cfg.backend, cfg.timeout_s, cfg.concurrency) == ("openai", 30.0, 8)
    raw["teacher"]["api_key_env"] = "sk-not-a-variable-name"
    with pytest.raises(config.ConfigError, match="api_key_env"):
        config.validate(raw)


STAGE = """
import sys
from pathlib import Path
from labmake.core import logs
from labmake.core.config import TeacherConfig
from labmake.teacher.cache import RequestCache
from labmake.teacher.complete import complete_all
from labmake.teacher.protocol import Request
from labmake.teacher.registry import open_teacher

url, cache_dir, log_file = sys.argv[1:4]
with logs.stage(log_file, "generate"):
    cfg = TeacherConfig(
        backend="openai", base_url=url, model="m", api_key_env="LABMAKE_TEST_KEY", max_retries=1
    )
    teacher = open_teacher(cfg)
    teacher.backoff_s = 0.01
    requests = [Request(f"Q: question {i}?\\nA:", i, 16, ("\\nQ:",)) for i in range(5)]
    complete_all(teacher, requests, "leaf", cache=RequestCache(Path(cache_dir)))
"""


def test_a_failing_server_stops_the_stage_with_one_line_and_no_key_anywhere(tmp_path: Path):
    def rule(n: int, _body: dict) -> str:
        return "ok" if n < 2 else "503"

    script, log_file = tmp_path / "stage.py", tmp_path / "generate.log"
    script.write_text(STAGE)
    env = {**os.environ, "LABMAKE_TEST_KEY": KEY}
    with FaultServer(rule).running() as server:
        done = subprocess.run(
            [sys.executable, str(script), server.url, str(tmp_path / "cache"), str(log_file)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert done.returncode == 1
    assert "labmake generate: error: " in done.stderr and "HTTP 503" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(RequestCache(tmp_path / "cache")) == 2  # what came before the outage is kept
    everything = done.stdout + done.stderr + log_file.read_text()
    everything += "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.json"))
    assert KEY not in everything and all(server.authorized)
