# One job per model (base, each phase, tuned, every GGUF), then the report over all of them.
from labmake.evaluation import models as _models
from labmake.taxonomy.scan import knowledge_leaves

EVAL_MODELS = _models.model_names(PHASES, QUANTS)
KNOWLEDGE_LEAVES = knowledge_leaves(TAXONOMY, LEAVES)
# The report's own knobs (intervals, failing on a regression) re-run the report only; the
# multiple-choice knobs reach the scoring through its data file, not as params.
EVAL_PARAMS = section(
    "evaluate", without=(*_models.REPORT_KEYS, "multiple_choice", *_models.OWN_RULE_KEYS)
)
REPORT_PARAMS = section("evaluate", only=_models.REPORT_KEYS)


wildcard_constraints:
    model="|".join(re.escape(m) for m in EVAL_MODELS),


rule generate_multiple_choice:
    # build/mc/{leaf}.jsonl: knowledge multiple choice the teacher writes from the leaf's
    # documents (every question asked, kept ones with their options). Evaluation data only.
    input:
        seeds=paths.SEEDS,
        code=code("generate_multiple_choice"),
    output:
        paths.MC_LEAF,
    params:
        teacher=section("teacher"),
        multiple_choice=section("evaluate").get("multiple_choice", {}),
        seed=config["seed"],
    log:
        paths.log("generate_multiple_choice", "{leaf}"),
    benchmark:
        paths.benchmark("generate_multiple_choice", "{leaf}"),
    threads: CONFIG.teacher.n_threads
    resources:
        mem_mb=2000,
        teacher=1,
        gpu=TEACHER_GPU,
    # With the leaves' generate jobs: one allocation, one teacher process (rules/generate.smk).
    group:
        "teacher"
    script:
        "../scripts/generate_multiple_choice.py"


rule multiple_choice:
    # build/data/multiple_choice.jsonl: every knowledge leaf's kept questions, sorted. Not an
    # input of mix or train: regenerating it never retrains.
    input:
        leaves=[paths.mc_leaf(leaf) for leaf in KNOWLEDGE_LEAVES],
        code=code("multiple_choice"),
    output:
        paths.MULTIPLE_CHOICE,
    log:
        paths.log("multiple_choice"),
    benchmark:
        paths.benchmark("multiple_choice"),
    localrule: True
    script:
        "../scripts/multiple_choice.py"


rule evaluate:
    # build/eval/{model}.json: one model's scores on the held-out items.
    input:
        unpack(lambda w: _models.model_inputs(w.model, PHASES, STUDENT_GGUF)),
        eval=paths.dataset("eval"),
        retention=paths.RETENTION_REFERENCE,
        judge=[CONFIG.evaluate.judge.gguf] if CONFIG.evaluate.judge and CONFIG.evaluate.judge.gguf else [],
        code=code("evaluate"),
    output:
        paths.EVAL_MODEL,
    params:
        evaluate=EVAL_PARAMS,
        seed=config["seed"],
        phases=PHASES,
        student=STUDENT_GGUF,
    log:
        paths.log("evaluate", "{model}"),
    benchmark:
        paths.benchmark("evaluate", "{model}"),
    threads: 2
    resources:
        mem_mb=6000,
        gpu=evaluate_gpu,
    script:
        "../scripts/evaluate.py"


rule report:
    # build/eval/report.json (deterministic) and build/report.html (for a person). Fails the
    # build on a regression when evaluate.fail_on_regression is true.
    input:
        eval=paths.dataset("eval"),
        mc=paths.MULTIPLE_CHOICE,
        models=[paths.eval_model(m) for m in EVAL_MODELS],
        f16=paths.gguf("F16"),
        seeds=all_leaves(paths.SEEDS),
        filter_stats=all_leaves(paths.FILTER_STATS),
        checkpoints=[paths.CHECKPOINT_DIR.format(phase=p) for p in PHASES],
        mix_stats=paths.MIX_STATS,
        retention=paths.RETENTION_REFERENCE,
        lm_eval=[paths.LM_EVAL.format(model=m) for m in LM_EVAL_MODELS],
        code=code("report"),
    output:
        json=paths.EVAL_REPORT,
        html=paths.REPORT_HTML,
    params:
        # The page also shows the whole params.yaml (the script reads it from Snakemake's
        # config): not a param here, since every other knob reaches this rule through its
        # inputs, and a param of the whole config would re-run it for knobs it does not read.
        evaluate=REPORT_PARAMS,
        seed=config["seed"],
    log:
        paths.log("report"),
    benchmark:
        paths.benchmark("report"),
    localrule: True
    script:
        "../scripts/report.py"


rule manifest:
    # What went in (the provenance written into the GGUFs) and what came out (every sha256).
    input:
        f16=paths.gguf("F16"),
        ggufs=[paths.gguf(q) for q in QUANTS],
        report=paths.EVAL_REPORT,
        data=[paths.dataset(d) for d in paths.DATASETS] + [paths.MULTIPLE_CHOICE],
        card=[paths.MODEL_CARD, paths.MODELFILE],
        code=code("manifest"),
    output:
        paths.MANIFEST,
    log:
        paths.log("manifest"),
    benchmark:
        paths.benchmark("manifest"),
    localrule: True
    script:
        "../scripts/manifest.py"
