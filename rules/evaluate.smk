rule evaluate:
    input:
        eval=paths.dataset("eval"),
        base=paths.BASE_DIR,
        tuned=paths.MERGED_DIR,
        ggufs=[paths.gguf(q) for q in QUANTS],
        code=code("evaluate.py", "train.py", "filters.py"),
    output:
        paths.EVAL_REPORT,
    params:
        evaluate=config.get("evaluate", {}),
        quants=QUANTS,
    log:
        paths.log("evaluate"),
    benchmark:
        paths.benchmark("evaluate"),
    threads: 2
    resources:
        mem_mb=6000,
    script:
        "../scripts/evaluate.py"


rule manifest:
    # What went in (the provenance written into the GGUFs) and what came out (every sha256).
    input:
        f16=paths.gguf("F16"),
        ggufs=[paths.gguf(q) for q in QUANTS],
        report=paths.EVAL_REPORT,
        data=[paths.dataset(d) for d in paths.DATASETS],
        code=code("provenance.py", "export.py"),
    output:
        paths.MANIFEST,
    log:
        paths.log("manifest"),
    benchmark:
        paths.benchmark("manifest"),
    localrule: True
    script:
        "../scripts/manifest.py"
