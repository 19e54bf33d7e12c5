rule generate:
    input:
        seeds=paths.SEEDS,
        code=code("generate"),
        # generate.pipelines_dir: its pipelines and prompts shadow the shipped ones by name.
        pipelines=(
            sorted(str(p) for p in Path(CONFIG.generate.pipelines_dir).rglob("*") if p.is_file())
            if CONFIG.generate.pipelines_dir
            else []
        ),
    output:
        paths.GENERATED,
    params:
        teacher=section("teacher"),
        generate=section("generate"),
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
