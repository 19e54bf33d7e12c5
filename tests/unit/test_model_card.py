"""The model card and the Ollama Modelfile: their content, from a build's facts, byte-stable."""

from __future__ import annotations

from labmake.evaluation import model_card, modelfile
from labmake.training.student import GEMMA_CHAT_TEMPLATE

META = {
    "general.architecture": "gemma3",
    "general.name": "gemma-3-270m-q4_k_m (labmake)",
    "general.base_model.0.name": "Gemma 3 270m",
    "general.license": "gemma",
    "labmake.version": "0.1.0",
    "labmake.base_model": "gemma-3-270m-q4_k_m.gguf",
    "labmake.base_model_sha256": "a5fd3b62230aa5ec" * 4,
    "labmake.teacher": "llama-cpp:gemma-3-270m-q4_k_m.gguf@sha256:a5fd3b62230aa5ec",
    "labmake.taxonomy_commit": "b4993e0",
    "labmake.taxonomy_sha256": "73f1" * 16,
    "labmake.params_sha256": "e6cd" * 16,
    "labmake.dataset.eval": 20,
    "labmake.dataset.knowledge": 30,
    "labmake.toolchain.torch": "2.13.0+cpu",
    "labmake.toolchain.transformers": "5.24.0",
    "labmake.toolchain.llama_cpp_python": "0.3.36",
}
GGUFS = [
    {"quant": "F16", "file": "model.F16.gguf", "bytes": 542_800_000, "sha256": "aa" * 32},
    {"quant": "Q4_K_M", "file": "model.Q4_K_M.gguf", "bytes": 253_100_000, "sha256": "bb" * 32},
    {"quant": "Q8_0", "file": "model.Q8_0.gguf", "bytes": 291_500_000, "sha256": "cc" * 32},
]
LEAVES = [
    {
        "leaf": "knowledge/science/water_cycle",
        "kind": "knowledge",
        "seed_examples": 15,
        "documents": ["water_cycle.md"],
        "generated_kept": 6,
        "trained_records": 17,
        "held_out": 6,
    },
    {
        "leaf": "compositional_skills/writing/freeform/haiku",
        "kind": "skill",
        "seed_examples": 6,
        "documents": [],
        "generated_kept": 10,
        "trained_records": 11,
        "held_out": 4,
    },
]
PHASES = [
    {
        "name": "knowledge",
        "dataset": "knowledge",
        "method": "lora",
        "max_steps": 36,
        "learning_rate": 2e-4,
        "replay_ratio": 0.0,
        "selected": {"step": 24, "of_steps": 36, "by": "heldout_loss"},
    },
    {
        "name": "skills",
        "dataset": "skills",
        "method": "lora",
        "max_steps": 36,
        "learning_rate": 1e-4,
        "replay_ratio": 0.5,
        "selected": {"step": 12, "of_steps": 36, "by": "heldout_all_loss"},
    },
]


def _stat(mean, lo, hi):
    return {"mean": mean, "ci": [lo, hi], "n": 6}


REPORT = {
    "settings": {"confidence": 0.95},
    "models": {
        m: {}
        for m in (
            "base",
            "phase-knowledge",
            "phase-skills",
            "tuned",
            "gguf-F16",
            "gguf-Q4_K_M",
            "gguf-Q8_0",
        )
    },
    "overall": {
        "n": 10,
        "reference_nll": {
            "models": {"base": _stat(4.2, 4.0, 4.4), "tuned": _stat(3.0, 2.8, 3.2)},
            "delta": {"tuned": _stat(-1.2, -1.5, -0.9)},
        },
        "token_f1": {
            "models": {
                "gguf-F16": _stat(0.30, 0.2, 0.4),
                "gguf-Q4_K_M": _stat(0.15, 0.1, 0.2),
                "gguf-Q8_0": _stat(0.30, 0.2, 0.4),
            }
        },
    },
    "leaves": {
        "knowledge/science/water_cycle": {
            "n": 6,
            "reference_nll": {
                "models": {"base": _stat(4.0, 3.8, 4.2), "tuned": _stat(3.1, 2.9, 3.3)},
                "delta": {"tuned": _stat(-0.9, -1.3, -0.5)},
            },
            "multiple_choice": {"models": {"base": _stat(0.4, 0, 1), "tuned": _stat(0.6, 0, 1)}},
        },
    },
    "knowledge_kept": {
        "knowledge_phase": "knowledge",
        "flagged": [],
        "leaves": {
            "knowledge/science/water_cycle": {
                "base": 4.0,
                "after_knowledge": 3.0,
                "final": 3.1,
                "kept": 0.9,
                "flagged": False,
            }
        },
    },
    "retention": {
        "prompts": 48,
        "general": {
            "kl": {"models": {"base": _stat(0.0, 0.0, 0.0), "tuned": _stat(0.05, 0.04, 0.06)}}
        },
    },
}
PARAMS = {"seed": 1234, "train": {"max_seq_len": 256}}


def _facts(meta=META, template=GEMMA_CHAT_TEMPLATE) -> model_card.CardFacts:
    facts = model_card.CardFacts(dict(meta), template, GGUFS, LEAVES, PHASES, REPORT, PARAMS)
    facts.chosen = modelfile.best_gguf(GGUFS, REPORT)
    return facts


def test_the_card_says_what_how_how_well_under_which_terms_and_how_to_run():
    card = model_card.card(_facts())
    assert card.startswith("---\nlicense: other\nlicense_name: gemma\n")
    expected = [
        "base_model: Gemma 3 270m",
        "| `model.Q4_K_M.gguf` | Q4_K_M | 253.1 | `" + "bb" * 32,  # what it is: files, sizes
        "| `knowledge/science/water_cycle` | knowledge | 15 | water_cycle.md | 6 | 17 | 6 |",
        "| skills | skills | lora | 36 | 0.0001 | 0.5 | 12 of 36 (heldout all loss) |",  # phases
        "`llama-cpp:gemma-3-270m-q4_k_m.gguf@sha256:a5fd3b62230aa5ec`",  # the teacher
        "| transformers | `5.24.0` |",  # toolchain from labmake.toolchain.*
        "seed: 1234",  # params.yaml as built
        "| `knowledge/science/water_cycle` | 6 | 4.000 | 3.100 | -0.900 [-1.300, -0.500] | 0.40 → 0.60 |",
        "| `knowledge/science/water_cycle` | 4.000 | 3.000 | 3.100 | 90% |",  # knowledge kept
        "| tuned | 0.0500 [0.0400, 0.0600] |",  # retention with its interval
        "[Gemma Terms of Use](https://ai.google.dev/gemma/terms)",
        "llama-cli -m model.Q8_0.gguf",
        "labmake chat build/model/model.Q8_0.gguf",
        "ollama create my-model -f Modelfile",
    ]
    assert [e for e in expected if e not in card] == []
    assert model_card.card(_facts()) == card  # same facts, same bytes
    for absent in ("/tmp", "/home", "UTC", "2026-"):
        assert absent not in card


def test_the_licence_follows_the_base_model():
    other = model_card.card(_facts({**META, "general.license": "apache-2.0"}))
    assert "license_name: apache-2.0" in other and "Gemma Terms" not in other
    unnamed = {k: v for k, v in META.items() if k != "general.license"}
    assert "license: unknown" in model_card.card(_facts(unnamed))


def test_the_modelfile_runs_the_best_answering_gguf_with_its_template_and_stops():
    # F16 and Q8_0 tie on F1: the smaller file is chosen.
    assert modelfile.best_gguf(GGUFS, REPORT)["file"] == "model.Q8_0.gguf"
    text = modelfile.modelfile(_facts().chosen, GEMMA_CHAT_TEMPLATE, META)
    assert "FROM ./model.Q8_0.gguf" in text
    assert 'TEMPLATE """' in text and "<start_of_turn>model" in text
    assert 'PARAMETER stop "<end_of_turn>"' in text
    assert "Gemma Terms of Use" in text
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>{% endfor %}"
    )
    assert 'PARAMETER stop "<|im_end|>"' in modelfile.modelfile(_facts().chosen, chatml, META)
    unknown = modelfile.modelfile(_facts().chosen, "{{ messages }}", {})
    assert "TEMPLATE" not in unknown.replace("no TEMPLATE", "") and "FROM ./" in unknown
    assert modelfile.turn_format(None) is None
