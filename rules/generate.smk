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
        # generate.safety.policy: a policy file replacing or changing the shipped one.
        policy=[CONFIG.generate.safety.policy] if CONFIG.generate.safety.policy else [],
    output:
        generated=paths.GENERATED,
        # generate.knowledge.augment: the leaf's chunk rewrites, kept and rejected (else empty).
        augmented=paths.AUGMENTED,
    params:
        teacher=section("teacher"),
        generate=section("generate"),
        # Rounds go on until the filters accept min_kept samples: the filters' own knobs (not
        # what the filter stage does with a flagged leaf) decide how many rounds run.
        filter=section("filter", without=("flag_below", "on_empty")),
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
