"""Retention on the tiny student: the reference, the drift of Hugging Face and GGUF models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from labmake.core import artifacts  # noqa: E402
from labmake.core.config import LoraConfig, PhaseConfig, RetentionConfig  # noqa: E402
from labmake.evaluation import retention  # noqa: E402
from labmake.training.phase import run_phase  # noqa: E402
from labmake.training.weights import load_tuned  # noqa: E402

pytestmark = pytest.mark.model

CFG = RetentionConfig(prompts=4, tokens=6, top_k=16)


@pytest.fixture(scope="module")
def qa_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "trivia.jsonl"
    rows = [
        {"question": "What is the capital of France?", "answer": "Paris is the capital of France."},
        {
            "messages": [
                {"role": "user", "content": "How many legs does a spider have?"},
                {"role": "assistant", "content": "A spider has eight legs."},
            ]
        },
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(
    tiny_hf_student: Path, tiny_student_gguf: Path, qa_file: Path, tmp_path_factory
) -> Path:
    out = tmp_path_factory.mktemp("ref") / "retention.jsonl"
    cfg = RetentionConfig(prompts=4, tokens=6, top_k=16, qa=(str(qa_file),))
    retention.build_reference(tiny_hf_student, tiny_student_gguf, cfg, 11, out, n_threads=1)
    return out


def test_reference_is_seeded_and_holds_what_it_says(
    reference: Path, tiny_hf_student: Path, tiny_student_gguf: Path, qa_file: Path, tmp_path: Path
) -> None:
    records = artifacts.read_jsonl(reference)
    general = [r for r in records if r["kind"] == "general"]
    qa = [r for r in records if r["kind"] == "qa"]
    assert len(general) == 4 and len(qa) == 2 and {r["set"] for r in qa} == {"trivia"}
    for r in general:
        steps = len(r["ids"]) - r["start"]
        assert 1 <= steps <= 6 and len(r["top_ids"]) == len(r["top_logprobs"]) == steps
        assert all(len(row) == 16 for row in r["top_ids"])
        assert all(row == sorted(row, reverse=True) for row in r["top_logprobs"])
    assert retention.draw_prompts(CFG, 11) == [r["prompt"] for r in general]
    again = tmp_path / "again.jsonl"
    cfg = RetentionConfig(prompts=4, tokens=6, top_k=16, qa=(str(qa_file),))
    retention.build_reference(tiny_hf_student, tiny_student_gguf, cfg, 11, again, n_threads=1)
    assert again.read_bytes() == reference.read_bytes()


def test_the_base_does_not_drift_from_itself_and_a_tuned_model_does(
    reference: Path, tiny_hf_student: Path, tmp_path: Path
) -> None:
    base, _ = load_tuned(tiny_hf_student, [])
    scores = retention.score(reference, model=base.eval())
    assert max(scores["retention"]["kl"]) < 1e-4
    assert len(scores["retention"]["nll"]) == 4 and len(scores["retention_qa"]["trivia"]) == 2
    assert scores["retention_sha256"] == artifacts.sha256_file(reference)
    data = tmp_path / "d.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Say {w}."},
                {"role": "assistant", "content": w},
            ]
        }
        for w in ("red", "blue", "green", "black")
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    phase = PhaseConfig(
        name="knowledge",
        dataset="knowledge",
        max_steps=6,
        learning_rate=5e-2,
        batch_size=2,
        lora=LoraConfig(target_modules=("q_proj", "v_proj")),
    )
    out = tmp_path / "knowledge"
    run_phase(
        phase,
        max_seq_len=64,
        seed=3,
        base_dir=tiny_hf_student,
        parent_dirs=[],
        dataset=data,
        replay=[],
        out_dir=out,
    )
    tuned, _ = load_tuned(tiny_hf_student, [out])
    moved = retention.score(reference, model=tuned.eval())
    assert min(moved["retention"]["kl"]) > 1e-3


def test_a_gguf_is_scored_on_the_same_tokens(
    reference: Path, tiny_hf_student: Path, tiny_student_gguf: Path
) -> None:
    base, _ = load_tuned(tiny_hf_student, [])
    hf = retention.score(reference, model=base.eval())
    gguf = retention.score(reference, gguf=tiny_student_gguf, n_threads=1)
    # The same weights in llama.cpp (F32): the same distributions up to kernel rounding.
    assert max(gguf["retention"]["kl"]) < 1e-3
    for a, b in zip(hf["retention"]["nll"], gguf["retention"]["nll"], strict=True):
        assert a == pytest.approx(b, abs=1e-2)
    for a, b in zip(hf["retention_qa"]["trivia"], gguf["retention_qa"]["trivia"], strict=True):
        assert a == pytest.approx(b, abs=1e-2)
