rule seeds:
    input:
        leaf_files,
        code=code("seeds"),
    output:
        paths.SEEDS,
    params:
        seeds=config.get("seeds", {}),
        # Only what picks the tokenizer that measures chunks: sampling knobs must not rerun seeds.
        tokenizer={
            "teacher": {k: config["teacher"].get(k) for k in ("backend", "gguf")},
            "student": {"gguf": config.get("student", {}).get("gguf")},
        },
        root=str(TAXONOMY),
    log:
        paths.log("seeds", "{leaf}"),
    benchmark:
        paths.benchmark("seeds", "{leaf}"),
    localrule: True
    script:
        "../scripts/seeds.py"
