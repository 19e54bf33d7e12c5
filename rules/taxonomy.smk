rule seeds:
    input:
        leaf_files,
        # A served teacher's chunks are measured with the student's tokenizer: a Hugging Face
        # student's comes from its F16 export.
        student=[STUDENT_GGUF] if CONFIG.student.hf and CONFIG.teacher.backend == "openai" else [],
        code=code("seeds"),
    output:
        paths.SEEDS,
    params:
        seeds=section("seeds"),
        # Only what picks the tokenizer that measures chunks: sampling knobs must not rerun seeds.
        tokenizer={
            "teacher": section("teacher", only=("backend", "gguf")),
            "student": section("student", only=("gguf", "hf")),
        },
        root=str(TAXONOMY),
        # Where a leaf's git documents may come from (the operator's allowlist).
        sources=section("taxonomy", only=("document_sources",)),
    log:
        paths.log("seeds", "{leaf}"),
    benchmark:
        paths.benchmark("seeds", "{leaf}"),
    localrule: True
    script:
        "../scripts/seeds.py"
