# What ships beside the GGUFs: the model card and an Ollama Modelfile (build/model/).


rule model_card:
    # build/model/README.md and build/model/Modelfile, from the build's own artifacts; no date,
    # no absolute path: the same inputs give the same bytes.
    input:
        f16=paths.gguf("F16"),
        ggufs=[paths.gguf(q) for q in QUANTS],
        seeds=all_leaves(paths.SEEDS),
        mix_stats=paths.MIX_STATS,
        checkpoints=[paths.CHECKPOINT_DIR.format(phase=p) for p in PHASES],
        report=paths.EVAL_REPORT,
        code=code("model_card"),
    output:
        card=paths.MODEL_CARD,
        modelfile=paths.MODELFILE,
    # The card shows params.yaml as built, read from Snakemake's config like the report page
    # does: not a param, since every knob that shapes the model or its scores reaches this
    # rule through its inputs, and a param of the whole config would re-run it for the rest.
    log:
        paths.log("model_card"),
    benchmark:
        paths.benchmark("model_card"),
    localrule: True
    script:
        "../scripts/model_card.py"
