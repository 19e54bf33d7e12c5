rule seeds:
    input:
        leaf_files,
        code=code("seeds.py", "taxonomy*.py", "schema/skill_*.yaml", "schema/knowledge_*.yaml"),
    output:
        paths.SEEDS,
    params:
        seeds=config.get("seeds", {}),
        root=str(TAXONOMY),
    log:
        paths.log("seeds", "{leaf}"),
    benchmark:
        paths.benchmark("seeds", "{leaf}"),
    localrule: True
    script:
        "../scripts/seeds.py"
