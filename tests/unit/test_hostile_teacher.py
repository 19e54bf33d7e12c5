"""A hostile or broken OpenAI-compatible server, and a damaged request cache.

The server may trickle, flood, compress a bomb, echo the key back, or put terminal escapes in
its answers; the cache may be unwritable or hold entries of the wrong types. Each case ends in
one clear outcome: an answer cleaned of control characters, or one message without the key.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
import tracemalloc

import pytest

from labmake.core import artifacts, config
from labmake.core.config import TeacherConfig
from labmake.teacher.bounded import clean_answer, redact
from labmake.teacher.cache import CacheError, RequestCache
from labmake.teacher.complete import complete_all
from labmake.teacher.openai_compat import OpenAITeacher
from labmake.teacher.protocol import Request, TeacherError
from labmake.teacher.registry import open_teacher
from labmake.testing.fake_teacher import FakeTeacher
from labmake.testing.fault_server import FaultServer, scripted

KEY = "sk-hostile-5e8a1f0c2b9d7"
ENV = "LABMAKE_HOSTILE_TEST_KEY"


def teacher(server: FaultServer, **overrides) -> OpenAITeacher:
    cfg = TeacherConfig(
        backend="openai",
        base_url=server.url,
        model="tiny",
        timeout_s=overrides.pop("timeout_s", 5.0),
        max_retries=overrides.pop("max_retries", 0),
        concurrency=1,
        **overrides,
    )
    made = open_teacher(cfg)
    assert isinstance(made, OpenAITeacher)
    made.backoff_s = 0.01
    return made


def ask(made: OpenAITeacher) -> list:
    return complete_all(made, [Request("Q: a question?\nA:", 7, 32, ("\nQ:",))], "t")


def test_a_trickled_reply_is_cut_off_at_the_total_deadline():
    with FaultServer(scripted(["trickle"]), trickle_s=0.3).running() as server:
        started = time.monotonic()
        with pytest.raises(TeacherError, match="did not arrive in time") as caught:
            ask(teacher(server, timeout_s=1.0))
    # Each byte came well within the 1 s socket timeout; the whole reply would take ~60 s.
    assert time.monotonic() - started < 5
    assert "teacher.timeout_s is 1 s" in str(caught.value)


def test_a_huge_body_is_read_only_up_to_the_cap():
    with FaultServer(scripted(["huge"]), huge_bytes=300 << 20).running() as server:
        tracemalloc.start()
        try:
            with pytest.raises(TeacherError, match=r"over the 4,194,304 byte cap"):
                ask(teacher(server))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 64 << 20  # reading 300 MB whole took 930 MB of memory
    assert server.sent_bytes < 64 << 20  # the client hung up early


def test_a_gzip_bomb_is_inflated_only_up_to_the_cap():
    with FaultServer(scripted(["gzip_bomb"]), bomb_bytes=256 << 20).running() as server:
        tracemalloc.start()
        try:
            with pytest.raises(TeacherError, match=r"over the 4,194,304 byte cap \(decompressed\)"):
                ask(teacher(server))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert peak < 64 << 20  # a 1.2 MB body expanded to 400 MB took 1.2 GB


def test_control_characters_and_escapes_never_reach_an_answer():
    with FaultServer(scripted(["control"])).running() as server:
        [answer] = ask(teacher(server))
    assert answer.text == " red answer with bell and\ttab"
    assert not any(ord(c) < 32 and c not in "\n\t" for c in answer.text)


def test_an_echoed_authorization_header_never_reaches_the_message_or_log(monkeypatch, caplog):
    monkeypatch.setenv(ENV, KEY)
    with (
        FaultServer(scripted(["echo_auth"])).running() as server,
        caplog.at_level(logging.DEBUG),
        pytest.raises(TeacherError) as caught,
    ):
        ask(teacher(server, api_key_env=ENV))
    message = str(caught.value)
    assert server.authorized == [True]  # the key was sent...
    assert "HTTP 404" in message and "[redacted]" in message
    assert KEY not in message and KEY[3:15] not in message  # ...and never shown
    assert KEY not in caplog.text and "Bearer sk" not in message


def test_redaction_covers_echoes_in_any_form():
    body = (
        '{"headers": {"authorization": "Bearer sk-live-123456789"}, "note": "x-api-key: abcdef123"}'
        " token sk-other-99999999 \x1b[2J Proxy-Authorization: Basic dXNlcjpwYXNz"
    )
    shown = redact(body, ["sk-other-99999999"])
    for secret in ("sk-live-123456789", "abcdef123", "sk-other-99999999", "dXNlcjpwYXNz"):
        assert secret not in shown
    assert "\x1b" not in shown


def test_clean_answer_keeps_text_and_drops_terminal_control():
    assert clean_answer("caf\u00e9 \u2014 ok\n\tnext") == "caf\u00e9 \u2014 ok\n\tnext"
    assert clean_answer("a\x1b[1;31mb\x1b[0m\x1b]8;;http://x\x07c\x00\x9b\r") == "abc"


@pytest.mark.parametrize(
    "url", ["http://user:pass@127.0.0.1:8000/v1", "https://key@api.example/v1"]
)
def test_credentials_in_the_base_url_are_refused_pointing_at_api_key_env(url):
    with pytest.raises(config.ConfigError) as caught:
        TeacherConfig(backend="openai", base_url=url, model="m")
    message = str(caught.value)
    assert "teacher.base_url" in message and "teacher.api_key_env" in message
    assert "pass" not in message.replace("password", "") and "key@" not in message
    judge = {"evaluate": {"judge": {"backend": "openai", "base_url": url, "model": "m"}}}
    params = {**yaml_params(), **judge}
    with pytest.raises(config.ConfigError, match=r"evaluate\.judge\.base_url.*evaluate\.judge"):
        config.validate(params)


def yaml_params() -> dict:
    from hostile import repo_params

    return repo_params()


def test_the_report_never_prints_url_credentials():
    from labmake.evaluation.report import _without_credentials

    shown = _without_credentials({"teacher": {"base_url": "https://u:secret@h.example/v1"}})
    assert shown == {"teacher": {"base_url": "https://h.example/v1"}}


# ------------------------------------------------------------------------ the request cache


def _fake() -> FakeTeacher:
    made = open_teacher(TeacherConfig(backend="fake-for-tests"))
    assert isinstance(made, FakeTeacher)
    return made


@pytest.mark.parametrize(
    "damage",
    [{"text": 12345}, {"finished": "yes"}, {"seed": True}, {"teacher": None}, {"text": None}],
)
def test_a_cache_entry_of_the_wrong_types_is_re_asked_with_a_warning(tmp_path, caplog, damage):
    cache = RequestCache(tmp_path)
    requests = [Request("Q: what?\nA:", 1, 16)]
    first = complete_all(_fake(), requests, "t", cache)
    [entry_path] = list(tmp_path.glob("??/*.json"))
    entry = json.loads(entry_path.read_text())
    entry.update(damage)
    entry_path.write_text(json.dumps(entry))
    again = _fake()
    with caplog.at_level(logging.WARNING):
        second = complete_all(again, requests, "t", cache)
    assert second[0].text == first[0].text and isinstance(second[0].text, str)
    assert "wrong type" in caplog.text and next(iter(damage)) in caplog.text
    assert json.loads(entry_path.read_text())["text"] == first[0].text  # repaired


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_one_clear_message(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CacheError, match="make the folder writable"):
            complete_all(_fake(), [Request("Q: x?\nA:", 1, 16)], "t", RequestCache(tmp_path))
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_cache_is_one_clear_message(tmp_path, monkeypatch, code):
    def refuse(path, text):  # what the OS says when the disk is full or mounted read-only
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(artifacts, "write_text_atomic", refuse)
    with pytest.raises(CacheError) as caught:
        complete_all(_fake(), [Request("Q: x?\nA:", 1, 16)], "t", RequestCache(tmp_path))
    message = str(caught.value)
    assert str(tmp_path) in message and os.strerror(code) in message
    assert "free disk space" in message and "\n" not in message
    assert isinstance(caught.value, RuntimeError)  # a stage shows it as a message
