rule filter:
    input:
        seeds=paths.SEEDS,
        generated=paths.GENERATED,
        code=code("filter"),
    output:
        samples=paths.FILTERED,
        stats=paths.FILTER_STATS,
    params:
        filter=section("filter"),
    log:
        paths.log("filter", "{leaf}"),
    benchmark:
        paths.benchmark("filter", "{leaf}"),
    localrule: True
    script:
        "../scripts/filter.py"
