rule generate:
    input:
        seeds=paths.SEEDS,
        code=code("generate.py", "teacher.py", "prompts/*.j2", "testing/*.py"),
    output:
        paths.GENERATED,
    params:
        teacher=config.get("teacher", {}),
        generate=config.get("generate", {}),
        seed=config["seed"],
    log:
        paths.log("generate", "{leaf}"),
    benchmark:
        paths.benchmark("generate", "{leaf}"),
    threads: CONFIG.teacher.n_threads
    resources:
        mem_mb=2000,
    script:
        "../scripts/generate.py"
