"""Synthetic data generation: pipelines as data (YAML), a registry of blocks, prompt files.

``pipeline.load(name)`` reads a pipeline, ``pipeline.check`` proves it sound before any teacher
call, ``pipeline.run`` runs it on one leaf. See ``labmake.sdg.generation`` for the stage around it.
"""

from labmake.sdg.blocks import REGISTRY
from labmake.sdg.blocks.base import Context, PipelineError
from labmake.sdg.pipeline import SHIPPED, Pipeline, check, load, pipeline_for, run

__all__ = [
    "REGISTRY",
    "SHIPPED",
    "Context",
    "Pipeline",
    "PipelineError",
    "check",
    "load",
    "pipeline_for",
    "run",
]
