"""rules/export.smk: the phases merged into the base, written as a GGUF, quantized."""

from __future__ import annotations

from pathlib import Path

from labmake.core import logs
from labmake.stages import Job


def merge(job: Job) -> None:
    """build/model/hf/: every phase applied to the base, in order, as one HF folder."""
    from labmake.training import merge as merging

    with logs.stage(job.log[0], "merge", job.threads):
        merging.merge(
            Path(job.input.base),
            [Path(p) for p in job.input.phases],
            Path(job.output[0]),
            provenance={"base_dir": job.input.base},
        )


def gguf_f16(job: Job) -> None:
    """build/model/model.F16.gguf, with everything that shaped the model in its metadata."""
    from labmake.evaluation import provenance
    from labmake.export import writer
    from labmake.training.merge import training_provenance

    with logs.stage(job.log[0], "gguf"):
        merged = Path(job.input.merged)
        built_from = provenance.collect(
            params=job.params.config,
            seeds_paths=[Path(p) for p in job.input.seeds],
            generated_paths=[Path(p) for p in job.input.generated],
            mix_stats=Path(job.input.mix_stats),
            base_dir=Path(job.input.base),
            taxonomy_root=job.params.taxonomy,
            project_root=Path.cwd(),
        )
        writer.write_gguf(
            merged,
            Path(job.output[0]),
            provenance={**built_from, **training_provenance(merged)},
        )


def quantize(job: Job) -> None:
    """build/model/model.{quant}.gguf: the F16 file quantized by llama.cpp."""
    from labmake.export import quantize as quantizing

    with logs.stage(job.log[0], "quantize", job.threads):
        quantizing.quantize(Path(job.input.f16), Path(job.output[0]), job.wildcards.quant)
