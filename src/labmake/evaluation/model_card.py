"""What ships with the weights: build/model/README.md (the model card) and build/model/Modelfile.

Both are written from the build's own artifacts -- the F16 GGUF's provenance (``general.*``,
``labmake.*``, ``labmake.toolchain.*``), the GGUF files, the leaves' seeds, the mix's counts,
each phase's record and report.json -- and hold no date and no absolute path, so two builds of
the same inputs write the same bytes. The card says what the model is, what it was taught, how
it was made, how it scored (per leaf, what the later phases kept of the knowledge phase, drift
from the base), its licence (the base model's terms) and how to run it. The Modelfile lets
Ollama run the best-answering GGUF with its chat template and stop tokens
(:mod:`labmake.evaluation.modelfile`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labmake.core import artifacts
from labmake.evaluation.card_text import (
    license_section,
    limits_section,
    made_section,
    run_section,
    scores_section,
    taught_section,
)
from labmake.evaluation.modelfile import best_gguf, modelfile


@dataclass
class CardFacts:
    """Everything the card says, read from the build's artifacts."""

    metadata: dict[str, Any]  # the F16 GGUF's general.* and labmake.* keys
    chat_template: str | None
    ggufs: list[dict[str, Any]]  # {"quant", "file", "bytes", "sha256"}, F16 first
    leaves: list[dict[str, Any]]  # per leaf: kind, seed examples, documents, mix counts
    phases: list[dict[str, Any]]  # per phase: its config and kept checkpoint
    report: dict[str, Any]
    params: dict[str, Any]
    chosen: dict[str, Any] = field(default_factory=dict)  # the GGUF the Modelfile runs


def _gguf_entry(path: Path) -> dict[str, Any]:
    quant = path.stem.split(".", 1)[1] if "." in path.stem else path.stem
    return {
        "quant": quant,
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": artifacts.sha256_file(path),
    }


def _leaves(seeds: Sequence[Path], mix_stats: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for path in seeds:
        s = artifacts.read_json(path)
        counts = mix_stats.get("leaves", {}).get(s["leaf"], {})
        out.append(
            {
                "leaf": s["leaf"],
                "kind": s["kind"],
                "seed_examples": len(s.get("seed_examples", [])),
                "documents": [d["name"] for d in s.get("documents", [])],
                "generated_kept": counts.get("generated_available"),
                "trained_records": counts.get("seed_train", 0) + counts.get("generated_records", 0),
                "held_out": counts.get("eval"),
            }
        )
    return sorted(out, key=lambda leaf: leaf["leaf"])


def _phases(checkpoints: Sequence[Path]) -> list[dict[str, Any]]:
    out = []
    for folder in checkpoints:
        record = artifacts.read_json(Path(folder) / "labmake_phase.json")
        metrics = artifacts.read_json(Path(folder) / "metrics.json")
        out.append(
            {
                **record["phase"],
                "selected": record.get("selected_checkpoint", {}),
                "samples": metrics.get("samples", {}),
            }
        )
    return out


def read_facts(
    *,
    f16: Path,
    ggufs: Sequence[Path],
    seeds: Sequence[Path],
    mix_stats: Path,
    checkpoints: Sequence[Path],
    report: Path,
    params: Mapping[str, Any],
) -> CardFacts:
    from labmake.export.metadata import metadata

    meta = metadata(f16)
    files = [_gguf_entry(Path(f16)), *(_gguf_entry(Path(p)) for p in ggufs if Path(p) != Path(f16))]
    facts = CardFacts(
        metadata={k: v for k, v in sorted(meta.items()) if k.startswith(("general.", "labmake."))},
        chat_template=meta.get("tokenizer.chat_template"),
        ggufs=files,
        leaves=_leaves(seeds, artifacts.read_json(mix_stats)),
        phases=_phases(checkpoints),
        report=artifacts.read_json(report),
        params=dict(params),
    )
    facts.chosen = best_gguf(facts.ggufs, facts.report)
    return facts


def card(facts: CardFacts) -> str:
    """The model card (Markdown with a YAML header, as model hubs read it)."""
    meta = facts.metadata
    name = str(meta.get("general.name", "model"))
    base = str(meta.get("general.base_model.0.name") or meta.get("labmake.base_model", "unknown"))
    licence = str(meta.get("general.license", "")) or None
    header = [
        "---",
        f"license: {'other' if licence else 'unknown'}",
        *([f"license_name: {licence}"] if licence else []),
        *(["license_link: https://ai.google.dev/gemma/terms"] if licence == "gemma" else []),
        f"base_model: {base}",
        "tags: [labmake, instructlab-taxonomy, lab-method, gguf]",
        "---",
        "",
        f"# {name}",
        "",
        f"{base} fine-tuned by labmake {meta.get('labmake.version', '')} on a taxonomy of "
        f"{len(facts.leaves)} leaves ({sum(leaf['kind'] == 'knowledge' for leaf in facts.leaves)} "
        "knowledge, "
        f"{sum(leaf['kind'] != 'knowledge' for leaf in facts.leaves)} skills), following the LAB "
        "method: a teacher model wrote synthetic data from the leaves' seed examples and "
        "documents, rule-based filters and judges kept part of it, and the student was tuned "
        f"in {len(facts.phases)} phase(s). This card and `Modelfile` were written by the build "
        "from its own artifacts.",
        "",
    ]
    sections = [
        _files_section(facts),
        taught_section(facts.leaves),
        made_section(facts.metadata, facts.phases, facts.params),
        scores_section(facts.report),
        license_section(licence, base),
        run_section(facts.chosen, [g["file"] for g in facts.ggufs]),
    ]
    return "\n".join(header) + "\n" + "\n".join(sections) + limits_section(facts.report)


def _files_section(facts: CardFacts) -> str:
    lines = [
        "## The model",
        "",
        f"Architecture `{facts.metadata.get('general.architecture', 'unknown')}`, "
        f"base `{facts.metadata.get('labmake.base_model', 'unknown')}` "
        f"(sha256 `{str(facts.metadata.get('labmake.base_model_sha256', ''))[:16]}`).",
        "",
        "| file | type | MB | sha256 |",
        "| --- | --- | ---: | --- |",
    ]
    for g in facts.ggufs:
        lines.append(f"| `{g['file']}` | {g['quant']} | {g['bytes'] / 1e6:.1f} | `{g['sha256']}` |")
    return "\n".join([*lines, ""])


def write(facts: CardFacts, card_out: Path, modelfile_out: Path) -> None:
    artifacts.write_text_atomic(card_out, card(facts))
    artifacts.write_text_atomic(
        modelfile_out, modelfile(facts.chosen, facts.chat_template, facts.metadata)
    )
