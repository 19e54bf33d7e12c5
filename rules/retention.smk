# Drift from the base on general text (every build), and standard benchmarks when asked for.
from labmake.evaluation import models as _models

RETENTION = section("evaluate").get("retention", {})
LM_EVAL_TASKS = list(CONFIG.evaluate.lm_eval.tasks)
LM_EVAL_MODELS = [_models.BASE, _models.TUNED] if LM_EVAL_TASKS else []


rule retention_reference:
    # build/data/retention.jsonl: general prompts, the base's own continuations and its top-k
    # next-token log-probs, plus the user's general Q&A (evaluate.retention.qa), tokenized once.
    input:
        base=paths.BASE_DIR,
        qa=list(CONFIG.evaluate.retention.qa),
        student=[STUDENT_GGUF] if STUDENT_GGUF else [],
        code=code("retention_reference"),
    output:
        paths.RETENTION_REFERENCE,
    params:
        retention=RETENTION,
        seed=config["seed"],
        # The base writes the continuations (the embedded default when null; a Hugging Face
        # student's F16 export when student.hf is set).
        student=STUDENT_GGUF,
    log:
        paths.log("retention_reference"),
    benchmark:
        paths.benchmark("retention_reference"),
    threads: 2
    resources:
        mem_mb=4000,
    script:
        "../scripts/retention_reference.py"


rule lm_eval:
    # build/eval/lm-eval/{model}.json: lm-evaluation-harness tasks on the base and the tuned
    # model, from data already on this machine (labmake[lm-eval]).
    wildcard_constraints:
        model="|".join(LM_EVAL_MODELS) or "NONE",
    input:
        unpack(lambda w: {"hf": _models.model_inputs(w.model, PHASES, None)["hf"]}),
        code=code("lm_eval"),
    output:
        paths.LM_EVAL,
    params:
        lm_eval=section("evaluate").get("lm_eval", {}),
        seed=config["seed"],
    log:
        paths.log("lm_eval", "{model}"),
    benchmark:
        paths.benchmark("lm_eval", "{model}"),
    threads: 2
    resources:
        mem_mb=8000,
    script:
        "../scripts/lm_eval.py"
