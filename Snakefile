# labmake: a taxonomy of seed examples compiled into a fine-tuned, quantized GGUF.
# The logic lives in src/labmake; rules declare files, params, logs, threads and resources.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/code.smk"
include: "rules/taxonomy.smk"
include: "rules/generate.smk"
include: "rules/filter.smk"
include: "rules/mix.smk"
include: "rules/train.smk"
include: "rules/export.smk"
include: "rules/retention.smk"
include: "rules/evaluate.smk"
include: "rules/card.smk"


rule all:
    input:
        ggufs=[paths.gguf(q) for q in QUANTS],
        report=paths.EVAL_REPORT,
        html=paths.REPORT_HTML,
        manifest=paths.MANIFEST,
        card=paths.MODEL_CARD,
        modelfile=paths.MODELFILE,
