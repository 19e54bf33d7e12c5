"""The training stage on the tiny student: masking, loss, determinism, phases, errors."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from labmake.core.config import LoraConfig, PhaseConfig  # noqa: E402
from labmake.training import loop, merge  # noqa: E402
from labmake.training.data import (  # noqa: E402
    IGNORE_INDEX,
    DataStats,
    TrainError,
    collate,
    encode,
    pack,
    plan_steps,
    prepare_samples,
)
from labmake.training.loop import make_accelerator, mixed_precision, train  # noqa: E402
from labmake.training.loss import loss_at_labels  # noqa: E402
from labmake.training.outputs import METRICS, PHASE_DONE  # noqa: E402
from labmake.training.phase import KILL_AT_STEP_ENV, run_phase  # noqa: E402
from labmake.training.weights import (  # noqa: E402
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    FULL_WEIGHTS,
    add_lora,
    load_tuned,
)

pytestmark = pytest.mark.model

COLOURS = ["red", "green", "blue", "white", "black", "yellow", "brown", "grey"]
THINGS = ["river", "cloud", "bread", "map", "train", "lake", "garden", "library"]


def _conversation(i: int) -> dict:
    thing, colour = THINGS[i % len(THINGS)], COLOURS[i % len(COLOURS)]
    return {
        "messages": [
            {"role": "user", "content": f"What colour is the {thing}?"},
            {"role": "assistant", "content": f"The {thing} is {colour}."},
        ],
        "leaf": "skills/colours",  # provenance keys ride along and are ignored
    }


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _phase(name: str = "knowledge", **overrides) -> PhaseConfig:
    values = {
        "name": name,
        "dataset": name,
        "max_steps": 20,
        "learning_rate": 2e-2,
        "warmup_steps": 2,
        "batch_size": 4,
        "lora": LoraConfig(
            r=8, alpha=16, dropout=0.0, target_modules=("q_proj", "v_proj", "o_proj", "k_proj")
        ),
    }
    values.update(overrides)
    return PhaseConfig(**values)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return _write_jsonl(
        tmp_path_factory.mktemp("data") / "knowledge.jsonl", [_conversation(i) for i in range(8)]
    )


@pytest.fixture(scope="module")
def phase1(tiny_hf_student: Path, data: Path, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ckpt") / "knowledge"
    metrics = run_phase(
        _phase(),
        max_seq_len=64,
        seed=7,
        base_dir=tiny_hf_student,
        parent_dirs=[],
        dataset=data,
        replay=[],
        out_dir=out,
    )
    return out, metrics


@pytest.fixture(scope="module")
def tokenizer(tiny_hf_student: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_hf_student)


def test_labels_cover_only_the_assistant_turn(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Why do clouds form?"},
        {"role": "assistant", "content": "Rising air cools and its vapour condenses."},
        {"role": "user", "content": "And rain?"},
        {"role": "assistant", "content": "Droplets grow heavy and fall."},
    ]
    sample = encode(tokenizer, messages)
    assert len(sample.input_ids) == len(sample.labels)
    labelled = [
        t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab != IGNORE_INDEX
    ]
    masked = [
        t for t, lab in zip(sample.input_ids, sample.labels, strict=True) if lab == IGNORE_INDEX
    ]
    assert all(
        lab in (IGNORE_INDEX, t) for t, lab in zip(sample.input_ids, sample.labels, strict=True)
    )
    assert tokenizer.decode(labelled) == (
        "Rising air cools and its vapour condenses.<end_of_turn>\n"
        "Droplets grow heavy and fall.<end_of_turn>\n"
    )
    prompt_side = tokenizer.decode(masked)
    assert prompt_side.startswith("<bos><start_of_turn>user\nWhy do clouds form?<end_of_turn>")
    assert "And rain?" in prompt_side and "<start_of_turn>model\n" in prompt_side
    assert "vapour" not in prompt_side and "Droplets" not in prompt_side


def test_template_that_is_not_prefix_stable_is_refused(tokenizer) -> None:
    tok = copy.deepcopy(tokenizer)
    # Renders the number of turns first: adding a turn rewrites the start of the text.
    tok.chat_template = (
        "{{ messages|length }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    with pytest.raises(TrainError, match="not prefix-stable"):
        encode(tok, _conversation(0)["messages"])


@pytest.mark.parametrize("softcap", [None, 0.05])  # the tiny logits are near 0
def test_selected_logits_loss_equals_full_cross_entropy(
    tiny_hf_student: Path, tokenizer, softcap
) -> None:
    model, _ = load_tuned(tiny_hf_student, [])
    model.config.final_logit_softcapping = softcap  # Gemma 2 style; both paths must apply it
    samples = [encode(tokenizer, _conversation(i)["messages"]) for i in (0, 3, 5)]
    samples.append(
        encode(
            tokenizer,
            [
                {
                    "role": "user",
                    "content": "Tell me about the water cycle and the rivers, please.",
                },
                {
                    "role": "assistant",
                    "content": "Water evaporates, forms clouds and falls as rain.",
                },
            ],
        )
    )
    batch = collate(samples, tokenizer.pad_token_id)
    assert len({len(s.input_ids) for s in samples}) > 1  # padding is exercised
    with torch.no_grad():
        loss_sum, n = loss_at_labels(model, **batch)
        reference = model(**batch).loss  # HF: full logits, shift, mean over labelled tokens
    assert n == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum()) > 0
    assert torch.allclose(loss_sum / n, reference, rtol=1e-5, atol=1e-6)


def test_training_moves_the_adapter_and_leaves_the_base_alone(
    tiny_hf_student: Path, tokenizer
) -> None:
    model, _ = load_tuned(tiny_hf_student, [])
    torch.manual_seed(0)
    model = add_lora(model, LoraConfig(r=4, alpha=8))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    assert trainable and all("lora_" in k for k in trainable)
    samples = [encode(tokenizer, _conversation(i)["messages"]) for i in range(4)]
    phase = _phase(max_steps=3, warmup_steps=0, batch_size=2)
    plan = plan_steps(len(samples), phase, random.Random(0))
    result = train(model, samples, plan, phase, pad_id=tokenizer.pad_token_id)
    assert len(result.history) == 3 and result.chosen_step == 3 and result.evals == []
    after = dict(model.named_parameters())
    for name, old in before.items():
        same = torch.equal(old, after[name].detach().to(old.device))  # trained on a GPU: back
        if "lora_B" in name:
            assert not same, f"{name} did not change"
        elif name not in trainable:
            assert same, f"frozen {name} changed"


def test_phase_learns_and_writes_its_checkpoint(phase1, data: Path, tiny_hf_student: Path) -> None:
    out, metrics = phase1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [ADAPTER_WEIGHTS, ADAPTER_CONFIG, METRICS, PHASE_DONE]
    )
    assert metrics == json.loads((out / METRICS).read_text())
    assert metrics["steps"] == 20 and len(metrics["loss"]) == 20
    # The tiny random model's output layer limits how sure it can get; chance is ln(512)=6.24.
    assert metrics["first_loss"] > 6.0
    assert metrics["mean_last_k_loss"] < metrics["first_loss"] - 0.3, metrics["loss"]
    assert metrics["samples"] == {
        "records": 8,
        "heldout": 0,
        "replayed": 0,
        "dropped_too_long": 0,
        "truncated_too_long": 0,
        "dropped_no_assistant": 0,
        "used": 8,
    }
    assert metrics["chosen_step"] == 20 and metrics["heldout_loss"] == []
    assert all(n > 0 for n in metrics["loss_tokens"])
    provenance = json.loads((out / PHASE_DONE).read_text())
    assert provenance["parents"] == [] and provenance["seed"] == 7
    assert provenance["selected_checkpoint"]["by"] == "last_step"
    assert provenance["packing"] is True and provenance["phase"]["method"] == "lora"
    assert not (out.parent / ".resume").exists()  # no checkpoint_every: no resume state
    assert provenance["phase"]["name"] == "knowledge"
    assert provenance["dataset"]["path"] == str(data) and provenance["replay"] == []
    assert provenance["base"]["architecture"] == "Gemma3ForCausalLM"
    config = json.loads((out / ADAPTER_CONFIG).read_text())
    assert config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert config["r"] == 8 and config["lora_alpha"] == 16
    text = (out / METRICS).read_text() + (out / PHASE_DONE).read_text()
    assert "time" not in text and "date" not in text  # no wall-clock values in artifacts


def test_same_seed_gives_identical_bytes(
    phase1, data: Path, tiny_hf_student: Path, tmp_path: Path
) -> None:
    out, _ = phase1
    again = tmp_path / "knowledge"
    again.mkdir()
    (again / "stale.txt").write_text("a re-run replaces the whole folder")
    run_phase(
        _phase(),
        max_seq_len=64,
        seed=7,
        base_dir=tiny_hf_student,
        parent_dirs=[],
        dataset=data,
        replay=[],
        out_dir=again,
    )
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in out.iterdir())
    for path in out.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    assert not list(tmp_path.glob(".knowledge*"))  # no temp folders left behind


def test_second_phase_starts_from_the_first(
    phase1, data: Path, tiny_hf_student: Path, tokenizer, tmp_path: Path
) -> None:
    out1, _ = phase1
    skills = [_conversation(i + 3) for i in range(5)]
    skills.append(
        {
            "messages": [  # far longer than max_seq_len: dropped and counted
                {"role": "user", "content": "Describe the water cycle. " * 20},
                {"role": "assistant", "content": "It moves water. " * 20},
            ]
        }
    )
    skills.append({"messages": [{"role": "user", "content": "Nothing to answer."}]})
    dataset = _write_jsonl(tmp_path / "skills.jsonl", skills)
    out2 = tmp_path / "skills"
    metrics = run_phase(
        _phase("skills", max_steps=3, replay_ratio=0.5),
        max_seq_len=64,
        seed=7,
        base_dir=tiny_hf_student,
        parent_dirs=[out1],
        dataset=dataset,
        replay=[data],
        out_dir=out2,
    )
    # 7 records + round(0.5 * 7) = 4 replayed, minus the over-long and the answer-less one
    assert metrics["samples"] == {
        "records": 7,
        "heldout": 0,
        "replayed": 4,
        "dropped_too_long": 1,
        "truncated_too_long": 0,
        "dropped_no_assistant": 1,
        "used": 9,
    }
    provenance = json.loads((out2 / PHASE_DONE).read_text())
    assert provenance["parents"] == ["knowledge"]
    assert list(provenance["parent_adapters"]) == ["knowledge"]
    assert provenance["dataset"]["path"] == str(dataset)
    assert [r["path"] for r in provenance["replay"]] == [str(data)]

    ids = torch.tensor([encode(tokenizer, _conversation(1)["messages"]).input_ids])
    with torch.no_grad():
        base = load_tuned(tiny_hf_student, [])[0](ids).logits
        tuned1 = load_tuned(tiny_hf_student, [out1])[0](ids).logits
        tuned2 = load_tuned(tiny_hf_student, [out1, out2])[0](ids).logits
    assert not torch.allclose(base, tuned1, atol=1e-3)
    assert not torch.allclose(tuned1, tuned2, atol=1e-4)


def test_empty_dataset_is_a_clear_error(tiny_hf_student: Path, tmp_path: Path) -> None:
    empty = tmp_path / "skills.jsonl"
    empty.write_text("")
    with pytest.raises(TrainError, match=r"skills\.jsonl: empty.*filter kept no samples"):
        run_phase(
            _phase("skills"),
            max_seq_len=64,
            seed=7,
            base_dir=tiny_hf_student,
            parent_dirs=[],
            dataset=empty,
            replay=[],
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_all_samples_too_long_is_a_clear_error(
    tiny_hf_student: Path, data: Path, tmp_path: Path
) -> None:
    with pytest.raises(TrainError, match=r"longer than train\.max_seq_len=8"):
        run_phase(
            _phase(),
            max_seq_len=8,
            seed=7,
            base_dir=tiny_hf_student,
            parent_dirs=[],
            dataset=data,
            replay=[],
            out_dir=tmp_path / "out",
        )


def test_plan_covers_epochs_and_honours_max_steps() -> None:
    rng = random.Random(1)
    plan = plan_steps(10, _phase(max_steps=None, epochs=2, batch_size=3, grad_accum=2), rng)
    flat = [i for step in plan for micro in step for i in micro]
    assert len(plan) == 4 and sorted(flat) == sorted(list(range(10)) * 2)
    capped = plan_steps(10, _phase(max_steps=7, batch_size=4, grad_accum=1), rng)
    assert len(capped) == 7 and all(len(step) == 1 and len(step[0]) == 4 for step in capped)


def _long_conversation() -> list[dict]:
    # Longer than the tiny Gemma's sliding window (16 tokens): both attention kinds matter.
    return [
        {"role": "user", "content": "Tell me about the water cycle and the rivers, please."},
        {"role": "assistant", "content": "Water evaporates, forms clouds and falls as rain."},
    ]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    import tiny

    return tiny.make_hf_llama(tmp_path_factory.mktemp("llama") / "hf")


@pytest.mark.parametrize("family", ["gemma3", "llama"])  # eager and sdpa attention
def test_packed_batch_gives_the_padded_batch_loss(
    family: str, tiny_hf_student: Path, tiny_llama: Path, tokenizer
) -> None:
    from transformers import AutoModelForCausalLM

    if family == "gemma3":
        model, _ = load_tuned(tiny_hf_student, [])
    else:  # the same 512-token vocabulary, so the Gemma tokenizer's ids serve
        model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
        assert model.config._attn_implementation == "sdpa"
    samples = [encode(tokenizer, _long_conversation())]
    samples += [encode(tokenizer, _conversation(i)["messages"]) for i in (2, 6)]
    packed = pack(samples)
    assert packed["input_ids"].shape == (1, sum(len(s.input_ids) for s in samples))
    assert packed["position_ids"][0].tolist() == [
        p for s in samples for p in range(len(s.input_ids))
    ]
    with torch.no_grad():
        padded_sum, padded_n = loss_at_labels(model, **collate(samples, 0))
        packed_sum, packed_n = loss_at_labels(model, **packed)
        # The same row with positions that do not restart: attention crosses samples.
        crossing = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1])[None])
        crossing_sum, _ = loss_at_labels(model, **crossing)
    assert packed_n == padded_n > 0
    assert torch.allclose(packed_sum, padded_sum, rtol=1e-5)
    assert not torch.allclose(crossing_sum, padded_sum, rtol=1e-4)


def test_loss_on_all_and_over_length_settings(tokenizer) -> None:
    messages = _conversation(0)["messages"]
    every = encode(tokenizer, messages, loss_on="all")
    assert list(every.labels) == list(every.input_ids)
    answer_only = encode(tokenizer, messages)
    assert sum(lab != IGNORE_INDEX for lab in answer_only.labels) < len(every.labels)
    no_answer = [{"role": "user", "content": "Nothing to answer."}]
    assert set(encode(tokenizer, no_answer, loss_on="all").labels) == {IGNORE_INDEX}

    records = [{"messages": _long_conversation()}, {"messages": messages}]
    limit = len(encode(tokenizer, _long_conversation()).input_ids) - 3
    dropped = DataStats()
    kept = prepare_samples(tokenizer, records, limit, dropped)
    assert len(kept) == 1 and dropped.dropped_too_long == 1 and dropped.truncated_too_long == 0
    cut = DataStats()
    both = prepare_samples(tokenizer, records, limit, cut, over_length="truncate")
    assert len(both) == 2 and cut.truncated_too_long == 1 and cut.dropped_too_long == 0
    assert len(both[0].input_ids) == limit
    # A sample cut before its answer starts has nothing to learn: counted, not trained on.
    short = DataStats()
    assert prepare_samples(tokenizer, records[:1], 12, short, over_length="truncate") == []
    assert short.truncated_too_long == 1 and short.dropped_no_assistant == 1
    with pytest.raises(TrainError, match="over_length"):
        prepare_samples(tokenizer, records, limit, over_length="wrap")


def test_precision_is_bf16_only_on_a_bf16_gpu(monkeypatch) -> None:
    assert mixed_precision(torch.device("cpu")) == "no"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert mixed_precision(torch.device("cuda", 0)) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert mixed_precision(torch.device("cuda", 0)) == "no"
    monkeypatch.undo()
    # This machine: the CPU (fp32), or a GPU with bf16 (the device check runs these tests there).
    bf16_gpu = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert make_accelerator().mixed_precision == ("bf16" if bf16_gpu else "no")


def _run(tiny_hf_student: Path, data: Path, out: Path, phase: PhaseConfig, **kw) -> dict:
    return run_phase(
        phase,
        max_seq_len=64,
        seed=7,
        base_dir=tiny_hf_student,
        parent_dirs=kw.pop("parents", []),
        dataset=data,
        replay=[],
        out_dir=out,
        **kw,
    )


def test_best_checkpoint_is_kept_by_heldout_loss(
    tiny_hf_student: Path, data: Path, tmp_path: Path, monkeypatch
) -> None:
    real = loop.heldout_loss
    seen: list[int] = []

    def scripted(model, samples, **kw):  # a held-out curve with its minimum at step 4
        seen.append(len(samples))
        real(model, samples, **kw)  # runs, so the real path is exercised too
        return [3.0, 1.5, 2.0][len(seen) - 1]

    monkeypatch.setattr(loop, "heldout_loss", scripted)
    phase = _phase(max_steps=6, checkpoint_every=2, heldout_fraction=0.25)
    metrics = _run(tiny_hf_student, data, tmp_path / "best", phase)
    assert seen == [2, 2, 2]  # 25% of 8 records, at steps 2, 4 and 6
    assert metrics["heldout_loss"] == [  # score: what picks the checkpoint (here the loss)
        {"step": 2, "heldout_loss": 3.0, "score": 3.0},
        {"step": 4, "heldout_loss": 1.5, "score": 1.5},
        {"step": 6, "heldout_loss": 2.0, "score": 2.0},
    ]
    assert metrics["chosen_step"] == 4 and metrics["steps"] == 6
    assert metrics["samples"]["heldout"] == 2 and metrics["samples"]["used"] == 6
    chosen = json.loads((tmp_path / "best" / PHASE_DONE).read_text())
    assert chosen["selected_checkpoint"] == {
        "step": 4,
        "of_steps": 6,
        "by": "heldout_loss",
        "heldout_loss": 1.5,
        "heldout_samples": 2,
        "score": 1.5,
    }
    # The kept adapter is the one a 4-step run writes (same plan prefix, same held-out split).
    monkeypatch.setattr(loop, "heldout_loss", real)
    _run(tiny_hf_student, data, tmp_path / "four", _phase(max_steps=4, heldout_fraction=0.25))
    weights = ADAPTER_WEIGHTS
    assert (tmp_path / "best" / weights).read_bytes() == (tmp_path / "four" / weights).read_bytes()


KILLED_RUN = """
import json, sys
from pathlib import Path
from labmake.training.phase import run_phase
from labmake.core.config import LoraConfig, PhaseConfig
args = json.loads(sys.argv[1])
phase = PhaseConfig(**{**args["phase"], "lora": LoraConfig(**args["phase"]["lora"])})
run_phase(phase, max_seq_len=64, seed=7, base_dir=Path(args["base"]), parent_dirs=[],
          dataset=Path(args["data"]), replay=[], out_dir=Path(args["out"]))
"""


def test_killed_phase_resumes_to_the_same_bytes(
    tiny_hf_student: Path, data: Path, tmp_path: Path, caplog
) -> None:
    import dataclasses
    import os
    import signal
    import subprocess
    import sys

    # Dropout on, so the restored RNG state matters as much as the weights and the optimizer.
    lora = LoraConfig(r=4, alpha=8, dropout=0.1, target_modules=("q_proj", "v_proj"))
    phase = _phase(max_steps=10, checkpoint_every=4, heldout_fraction=0.25, lora=lora)
    whole = tmp_path / "whole" / "knowledge"
    _run(tiny_hf_student, data, whole, phase)

    out = tmp_path / "killed" / "knowledge"
    args = {
        "phase": dataclasses.asdict(phase),
        "base": str(tiny_hf_student),
        "data": str(data),
        "out": str(out),
    }
    env = dict(os.environ, **{KILL_AT_STEP_ENV: "6"})
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not out.exists()
    state = out.parent / ".resume" / "knowledge" / "state"
    saved = json.loads((state / "progress.json").read_text())
    assert saved["step"] == 4 and len(saved["history"]) == 4  # the checkpoint before the kill

    with caplog.at_level("INFO", logger="labmake.training.loop"):
        _run(tiny_hf_student, data, out, phase)
    assert "resuming at step 4 of 10" in caplog.text
    assert not (out.parent / ".resume").exists()  # removed once the phase is written
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG, METRICS, PHASE_DONE):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name


def test_stale_resume_state_is_not_used(
    tiny_hf_student: Path, data: Path, tmp_path: Path, caplog
) -> None:
    out = tmp_path / "knowledge"
    state = out.parent / ".resume" / "knowledge" / "state"
    state.mkdir(parents=True)
    (state / "progress.json").write_text(json.dumps({"fingerprint": "another run", "step": 3}))
    with caplog.at_level("INFO", logger="labmake.training.resume"):
        metrics = _run(tiny_hf_student, data, out, _phase(max_steps=2, checkpoint_every=1))
    assert "starting over" in caplog.text and metrics["steps"] == 2
    assert not (out.parent / ".resume").exists()


def test_full_fine_tune_phase_chains_and_merges(
    tiny_hf_student: Path, data: Path, tmp_path: Path, tokenizer
) -> None:
    from safetensors.torch import load_file

    full = tmp_path / "full"
    metrics = _run(
        tiny_hf_student, data, full, _phase(method="full", max_steps=3, learning_rate=1e-3)
    )
    base_model, _ = load_tuned(tiny_hf_student, [])
    assert metrics["trainable_parameters"] == sum(p.numel() for p in base_model.parameters())
    assert (full / FULL_WEIGHTS).is_file() and not (full / ADAPTER_WEIGHTS).exists()
    tuned = load_file(full / FULL_WEIGHTS)
    base = load_file(tiny_hf_student / "model.safetensors")
    assert set(tuned) == set(base)
    assert all(not torch.equal(tuned[k], base[k]) for k in base)  # every weight trained

    lora = tmp_path / "lora"
    _run(tiny_hf_student, data, lora, _phase("skills", max_steps=2), parents=[full])
    provenance = json.loads((lora / PHASE_DONE).read_text())
    assert provenance["parent_adapters"] == {"knowledge": export_hash(full / FULL_WEIGHTS)}

    ids = torch.tensor([encode(tokenizer, _long_conversation()).input_ids])
    with torch.no_grad():
        after_full = load_tuned(tiny_hf_student, [full])[0](ids).logits
        chained = load_tuned(tiny_hf_student, [full, lora])[0](ids).logits
        assert not torch.allclose(after_full, chained, atol=1e-4)
        merge.merge(tiny_hf_student, [full, lora], tmp_path / "merged", {})
        from transformers import AutoModelForCausalLM

        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
    assert torch.allclose(merged, chained, atol=1e-5)
    # What the phases were goes into the GGUF's metadata.
    keys = merge.training_provenance(tmp_path / "merged")
    assert keys["labmake.train.phases"] == "knowledge,skills"
    assert keys["labmake.train.knowledge.method"] == "full"
    assert keys["labmake.train.skills.method"] == "lora"
    assert keys["labmake.train.knowledge.steps"] == 3 == keys["labmake.train.knowledge.chosen_step"]
    assert keys["labmake.train.skills.train_samples"] == 8
    assert keys["labmake.train.skills.dataset_sha256"] == export_hash(data)


def export_hash(path: Path) -> str:
    from labmake.core.artifacts import sha256_file

    return sha256_file(path)
