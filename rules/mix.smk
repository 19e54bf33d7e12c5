rule mix:
    input:
        seeds=all_leaves(paths.SEEDS),
        filtered=all_leaves(paths.FILTERED),
        code=code("mix"),
    output:
        knowledge=paths.dataset("knowledge"),
        skills=paths.dataset("skills"),
        eval=paths.dataset("eval"),
        stats=paths.MIX_STATS,
    params:
        mix=section("mix"),
        # Training samples asking a held-out question are dropped by the filter's measure.
        near_duplicate=section("filter").get("near_duplicate", {}),
        seed=config["seed"],
    log:
        paths.log("mix"),
    benchmark:
        paths.benchmark("mix"),
    localrule: True
    script:
        "../scripts/mix.py"
