"""complete_all with the request cache: zero repeat requests, fixed groups, kill -9 resume."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from labmake.core import paths
from labmake.teacher.cache import RequestCache, request_key
from labmake.teacher.complete import complete_all
from labmake.teacher.protocol import Completion, OnDone, Request


class CountingTeacher:
    """Answers from the prompt and seed; counts what it was sent."""

    identity = "counting:v1"
    n_ctx = 400
    sampling = {"temperature": 0.7}
    batch_size = 1
    batch_invariant = True

    def __init__(self) -> None:
        self.sent: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, request: Request) -> Completion:
        self.sent.append(request)
        return Completion(text=f"{request.prompt}->{request.seed}", finished=True)

    def close(self) -> None:
        pass


class GroupTeacher(CountingTeacher):
    """Like a batched decoder: an answer depends on its batch-mates."""

    identity = "group:v1"
    batch_size = 3
    batch_invariant = False

    def complete_many(self, requests: Sequence[Request], on_done: OnDone) -> None:
        self.sent.extend(requests)
        mates = hashlib.sha256("|".join(r.prompt for r in requests).encode()).hexdigest()[:6]
        for i, r in enumerate(requests):
            on_done(i, Completion(text=f"{r.prompt}->{r.seed}@{mates}", finished=True))


def reqs(n: int, tag: str = "p") -> list[Request]:
    return [Request(f"{tag} {i}", 100 + i, 8, ("\n",)) for i in range(n)]


def test_second_run_sends_nothing_and_gives_the_same_answers(tmp_path: Path):
    teacher, cache = CountingTeacher(), RequestCache(tmp_path / "cache")
    first = complete_all(teacher, reqs(5), "t", cache=cache)
    assert len(teacher.sent) == 5 and len(cache) == 5
    again = CountingTeacher()
    second = complete_all(again, reqs(5), "t", cache=RequestCache(tmp_path / "cache"))
    assert again.sent == [] and second == first
    # Provenance rides along with each answer, cached or not.
    assert [c.seed for c in second] == [100, 101, 102, 103, 104]
    assert second[2].teacher == "counting:v1"
    assert second[2].prompt_sha256 == hashlib.sha256(b"p 2").hexdigest()


def test_a_changed_request_misses_and_only_it_is_sent(tmp_path: Path):
    cache = RequestCache(tmp_path)
    complete_all(CountingTeacher(), reqs(4), "t", cache=cache)
    edited = reqs(4)
    edited[1] = Request("p 1 edited", 101, 8, ("\n",))
    teacher = CountingTeacher()
    out = complete_all(teacher, edited, "t", cache=cache)
    assert [r.prompt for r in teacher.sent] == ["p 1 edited"]
    assert out[1].text == "p 1 edited->101"


def test_cache_key_covers_every_part_of_a_request():
    base = request_key("t", {"temperature": 0.7}, "prompt", 1, 8, ("\n",))
    assert base == request_key("t", {"temperature": 0.7}, "prompt", 1, 8, ("\n",))
    variants = [
        request_key("other", {"temperature": 0.7}, "prompt", 1, 8, ("\n",)),
        request_key("t", {"temperature": 0.8}, "prompt", 1, 8, ("\n",)),
        request_key("t", {"temperature": 0.7}, "prompt!", 1, 8, ("\n",)),
        request_key("t", {"temperature": 0.7}, "prompt", 2, 8, ("\n",)),
        request_key("t", {"temperature": 0.7}, "prompt", 1, 9, ("\n",)),
        request_key("t", {"temperature": 0.7}, "prompt", 1, 8, ("\n", "Q:")),
    ]
    assert len({base, *variants}) == 7


def test_a_damaged_cache_entry_is_a_miss_not_a_crash(tmp_path: Path):
    cache = RequestCache(tmp_path)
    complete_all(CountingTeacher(), reqs(2), "t", cache=cache)
    victim = sorted(tmp_path.glob("??/*.json"))[0]
    victim.write_text("{not json")
    teacher = CountingTeacher()
    out = complete_all(teacher, reqs(2), "t", cache=cache)
    assert len(teacher.sent) == 1 and [c.text for c in out] == ["p 0->100", "p 1->101"]


def test_a_prompt_that_overflows_the_context_is_reported_and_never_sent(tmp_path: Path):
    teacher = CountingTeacher()
    long = Request(" ".join(["word"] * 395), 7, 8)  # 395 + 8 > n_ctx 400
    out = complete_all(teacher, [reqs(1)[0], long], "t", cache=RequestCache(tmp_path))
    assert [r.prompt for r in teacher.sent] == ["p 0"]
    assert out[1].text == "" and "exceeds the teacher's context of 400" in (out[1].error or "")
    assert out[0].error is None


def test_batched_teacher_gets_fixed_groups_by_index(tmp_path: Path):
    teacher = GroupTeacher()
    out = complete_all(teacher, reqs(7), "t")
    assert [r.prompt for r in teacher.sent] == [f"p {i}" for i in range(7)]
    mates = [c.text.split("@")[1] for c in out]
    assert mates[0] == mates[1] == mates[2] != mates[3] == mates[4] == mates[5] != mates[6]


def test_batched_resume_reruns_whole_groups_and_equals_an_uninterrupted_run(tmp_path: Path):
    full = complete_all(GroupTeacher(), reqs(7), "t")
    cache = RequestCache(tmp_path)
    complete_all(GroupTeacher(), reqs(7), "t", cache=cache)
    # Lose two answers, as a kill in the middle of groups 1 and 2 would.
    entries = sorted(tmp_path.glob("??/*.json"), key=lambda p: json.loads(p.read_text())["seed"])
    entries[4].unlink()
    entries[6].unlink()
    teacher = GroupTeacher()
    resumed = complete_all(teacher, reqs(7), "t", cache=cache)
    assert resumed == full
    # Group 0 was complete: not re-sent. Groups 1 and 2 re-ran whole, in their original form.
    assert [r.prompt for r in teacher.sent] == ["p 3", "p 4", "p 5", "p 6"]


def test_an_edit_reruns_the_edited_request_s_group_to_match_a_fresh_run(tmp_path: Path):
    cache = RequestCache(tmp_path)
    complete_all(GroupTeacher(), reqs(6), "t", cache=cache)
    edited = reqs(6)
    edited[4] = Request("p 4 edited", 104, 8, ("\n",))
    teacher = GroupTeacher()
    out = complete_all(teacher, edited, "t", cache=cache)
    assert [r.prompt for r in teacher.sent] == ["p 3", "p 4 edited", "p 5"]
    assert out == complete_all(GroupTeacher(), edited, "t")


def test_teacher_cache_path_is_under_build():
    assert paths.TEACHER_CACHE == "build/cache/teacher"


RUNNER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from labmake.core import artifacts
    from labmake.teacher.cache import RequestCache
    from labmake.teacher.complete import complete_all
    from labmake.teacher.protocol import Completion, Request

    cache_dir, out, log, batched = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

    class Slow:
        identity = "slow:v1"
        n_ctx = 1000
        sampling = {}
        batch_size = 4 if batched else 1
        batch_invariant = not batched

        def count_tokens(self, text):
            return len(text)

        def complete_many(self, requests, on_done):
            with open(log, "a") as fh:
                fh.writelines(r.prompt + "\\n" for r in requests)
            mates = "|".join(r.prompt for r in requests) if batched else ""
            for i, r in enumerate(requests):
                time.sleep(0.08)
                on_done(i, Completion(text=f"{r.prompt}/{r.seed}/{len(mates)}", finished=True))

        def close(self):
            pass

    requests = [Request(f"request {i:02d}", 1000 + i, 16) for i in range(24)]
    done = complete_all(Slow(), requests, "slow", cache=RequestCache(Path(cache_dir)))
    artifacts.write_jsonl(out, [{"text": c.text, "seed": c.seed, "prompt": c.prompt_sha256} for c in done])
    """
)


def _run(tmp_path: Path, name: str, batched: bool, kill_after: int | None = None) -> list[str]:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    cache, out, log = tmp_path / f"cache-{name}", tmp_path / f"{name}.jsonl", tmp_path / "log"
    log.unlink(missing_ok=True)
    args = [sys.executable, str(script), str(cache), str(out), str(log), "1" if batched else "0"]
    proc = subprocess.Popen(args)
    if kill_after is not None:
        deadline = time.monotonic() + 60
        while len(RequestCache(cache)) < kill_after and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert not out.exists()
        return []
    assert proc.wait(timeout=60) == 0
    return log.read_text().splitlines()


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "fixed-groups"])
def test_kill_9_then_resume_is_byte_identical_and_sends_only_what_is_missing(
    tmp_path: Path, batched: bool
):
    _run(tmp_path, "clean", batched)
    _run(tmp_path, "resumed", batched, kill_after=9)
    entries = (tmp_path / "cache-resumed").glob("??/*.json")
    survived = sorted(json.loads(p.read_text())["seed"] - 1000 for p in entries)
    assert 9 <= len(survived) < 24
    sent = _run(tmp_path, "resumed", batched)
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    missing = [i for i in range(24) if i not in survived]
    # Fixed groups of 4 re-run whole: exactly those with a member lost in the kill.
    lost_groups = {m // 4 for m in missing}
    expected = [i for i in range(24) if i // 4 in lost_groups] if batched else missing
    assert sent == [f"request {i:02d}" for i in expected]
