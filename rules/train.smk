rule base_model:
    # The student in Hugging Face form: converted once from its GGUF (cached by content hash),
    # or a Hugging Face folder (student.hf) copied as it is; with student.chat_template if set.
    input:
        student=STUDENT_FILES,
        code=code("base_model"),
    output:
        directory(paths.BASE_DIR),
    params:
        student=section("student"),
    log:
        paths.log("base_model"),
    benchmark:
        paths.benchmark("base_model"),
    threads: 2
    resources:
        mem_mb=6000,
    script:
        "../scripts/base_model.py"


rule student_gguf:
    # A Hugging Face student as one F16 GGUF, written once: the base's answers, its retention
    # continuations and chunking for a served teacher read it as they read a student GGUF.
    input:
        base=paths.BASE_DIR,
        code=code("student_gguf"),
    output:
        paths.STUDENT_GGUF,
    log:
        paths.log("student_gguf"),
    benchmark:
        paths.benchmark("student_gguf"),
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/student_gguf.py"


rule train:
    # One phase of tuning (phases are data in params.yaml), starting from the earlier ones.
    input:
        base=paths.BASE_DIR,
        parents=phase_parents,
        dataset=lambda w: paths.dataset(PHASE_DATASET[w.phase]),
        replay=phase_replay,
        evaluation=phase_evaluation,
        # retention_weight > 0: checkpoints are also scored on their drift from the base.
        retention=lambda w: (
            [paths.RETENTION_REFERENCE]
            if next(p for p in CONFIG.train.phases if p.name == w.phase).retention_weight > 0
            else []
        ),
        code=code("train"),
    output:
        directory(paths.CHECKPOINT_DIR),
    params:
        phase=phase_params,
        # The stage-wide keys; each phase's own keys come with `phase`, so one phase's knob
        # re-runs that phase onward only.
        train=section("train", without=("phases",)),
        seed=config["seed"],
    log:
        paths.log("train", "{phase}"),
    benchmark:
        paths.benchmark("train", "{phase}"),
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
    script:
        "../scripts/train.py"
