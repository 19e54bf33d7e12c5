"""The build's stages: one module per rules file, one function per rule, named after the rule.

Each ``scripts/<rule>.py`` calls ``labmake.stages.<rules file>.<rule>(snakemake)`` and nothing
else; the function reads the job's typed config section, inputs and outputs, and calls the
components that do the work. The DAG, rule by rule (paths in :mod:`labmake.core.paths`):

=========================  ==========================  ===============================  ==============================
rule                       function                    inputs                           outputs
=========================  ==========================  ===============================  ==============================
seeds                      taxonomy.seeds              taxonomy/{leaf}/ (qna, docs)     build/seeds/{leaf}.json
generate                   generate.generate           seeds                            build/generated/{leaf}.jsonl,
                                                                                        {leaf}.augmented.jsonl
filter                     filter.filter               seeds, generated                 build/filtered/{leaf}.jsonl,
                                                                                        {leaf}.stats.json
mix                        mix.mix                     every leaf's seeds, filtered     build/data/{knowledge,skills,
                                                                                        eval}.jsonl, mix.json
base_model                 train.base_model            the student GGUF (params)        build/base/
train                      train.train                 base, earlier phases, dataset,   build/checkpoints/{phase}/
                                                       replayed datasets
merge                      export.merge                base, every phase                build/model/hf/
gguf_f16                   export.gguf_f16             merged, base, seeds, generated,  build/model/model.F16.gguf
                                                       mix.json
quantize                   export.quantize             F16 GGUF                         build/model/model.{quant}.gguf
generate_multiple_choice   evaluate.generate_          a knowledge leaf's seeds         build/mc/{leaf}.jsonl
                           multiple_choice
multiple_choice            evaluate.multiple_choice    every knowledge leaf's mc        build/data/multiple_choice.jsonl
retention_reference        retention.retention_        base, the student GGUF,          build/data/retention.jsonl
                           reference                   evaluate.retention.qa files
evaluate                   evaluate.evaluate           eval.jsonl, multiple choice,     build/eval/{model}.json
                                                       retention.jsonl, the model's
                                                       weights or GGUF
lm_eval                    retention.lm_eval           base or merged weights           build/eval/lm-eval/{model}.json
report                     evaluate.report             every model's scores, stats      build/eval/report.json,
                                                                                        build/report.html
model_card                 card.model_card             the GGUFs, seeds, mix.json,      build/model/README.md,
                                                       phases, report                   build/model/Modelfile
manifest                   evaluate.manifest           the GGUFs, report, datasets,     build/manifest.json
                                                       model card
=========================  ==========================  ===============================  ==============================

Every rule's code inputs are the import closure of its script (:mod:`labmake.core.code_inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from labmake.core.config import section

T = TypeVar("T")


class Job(Protocol):
    """What a stage reads of the ``snakemake`` object Snakemake hands a rule's script."""

    input: Any  # named inputs: job.input.seeds, ...; also a sequence of every path
    output: Any
    params: Any
    wildcards: Any
    log: Sequence[str]
    threads: int
    config: Mapping[str, Any]


def typed(cls: type[T], job: Job, name: str, key: str | None = None) -> T:
    """The typed form of the config section the rule passed as ``params.<name>``."""
    return section(cls, getattr(job.params, name), key or name)
