rule seeds:
    input:
        leaf_files,
        code=code("seeds", "taxonomy"),
    output:
        paths.SEEDS,
    params:
        seeds=config.get("seeds", {}),
        root=str(TAXONOMY),
    log:
        paths.LOG.format(rule="seeds", name="{leaf}"),
    localrule: True
    script:
        "../scripts/seeds.py"
