rule merge:
    input:
        base=paths.BASE_DIR,
        phases=[paths.CHECKPOINT_DIR.format(phase=p) for p in PHASES],
        code=code("merge"),
    output:
        directory(paths.MERGED_DIR),
    log:
        paths.log("merge"),
    benchmark:
        paths.benchmark("merge"),
    threads: 2
    resources:
        mem_mb=6000,
    script:
        "../scripts/merge.py"


rule gguf_f16:
    input:
        merged=paths.MERGED_DIR,
        base=paths.BASE_DIR,
        seeds=all_leaves(paths.SEEDS),
        generated=all_leaves(paths.GENERATED),
        mix_stats=paths.MIX_STATS,
        code=code("gguf_f16"),
    output:
        paths.gguf("F16"),
    params:
        # Everything that shapes the model; evaluation settings and labmake try's budget do not.
        config={k: v for k, v in config.items() if k not in ("evaluate", "try")},
        taxonomy=str(TAXONOMY),
    log:
        paths.log("gguf", "F16"),
    benchmark:
        paths.benchmark("gguf", "F16"),
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/gguf_f16.py"


rule quantize:
    input:
        f16=paths.gguf("F16"),
        code=code("quantize"),
    output:
        paths.GGUF,
    log:
        paths.log("quantize", "{quant}"),
    benchmark:
        paths.benchmark("quantize", "{quant}"),
    threads: 2
    resources:
        mem_mb=2000,
    script:
        "../scripts/quantize.py"
