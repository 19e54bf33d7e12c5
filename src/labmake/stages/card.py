"""rules/card.smk: the model card and the Ollama Modelfile that ship with the GGUFs."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.stages import Job


def model_card(job: Job) -> None:
    """build/model/README.md and build/model/Modelfile, from the build's own artifacts."""
    from labmake.evaluation import model_card as cards

    with logs.stage(job.log[0], "model_card"):
        facts = cards.read_facts(
            f16=Path(job.input.f16),
            ggufs=[Path(p) for p in job.input.ggufs],
            seeds=[Path(p) for p in job.input.seeds],
            mix_stats=Path(job.input.mix_stats),
            checkpoints=[Path(p) for p in job.input.checkpoints],
            report=Path(job.input.report),
            params=dict(job.config),
        )
        cards.write(facts, Path(job.output.card), Path(job.output.modelfile))
