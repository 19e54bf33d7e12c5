rule seeds:
    input:
        leaf_files,
        code=code("seeds"),
    output:
        paths.SEEDS,
    params:
        seeds=section("seeds"),
        # Only what picks the tokenizer that measures chunks: sampling knobs must not rerun seeds.
        tokenizer={
            "teacher": section("teacher", only=("backend", "gguf")),
            "student": section("student"),
        },
        root=str(TAXONOMY),
    log:
        paths.log("seeds", "{leaf}"),
    benchmark:
        paths.benchmark("seeds", "{leaf}"),
    localrule: True
    script:
        "../scripts/seeds.py"
