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
    # What went in (content hashes) and what came out (every artifact's sha256).
    input:
        ggufs=[paths.gguf(q) for q in QUANTS],
        report=paths.EVAL_REPORT,
        base=paths.BASE_DIR,
        seeds=all_leaves(paths.SEEDS),
        generated=all_leaves(paths.GENERATED),
        data=[paths.dataset(d) for d in paths.DATASETS],
        mix_stats=paths.MIX_STATS,
        code=code("provenance.py"),
    output:
        paths.MANIFEST,
    params:
        config={k: v for k, v in config.items() if k != "evaluate"},
        taxonomy=str(TAXONOMY),
    log:
        paths.log("manifest"),
    benchmark:
        paths.benchmark("manifest"),
    localrule: True
    script:
        "../scripts/manifest.py"
