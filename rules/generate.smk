# A limit on the resource "teacher" (profiles/slurm: 1) holds per allocation, not for the whole
# cluster: an allocation's teacher jobs take turns with its one teacher process.
resource_scopes:
    teacher="local",


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
        # One teacher at a time per allocation: with profiles/slurm's resource scope, the
        # group's jobs run one after another against the allocation's one teacher process.
        teacher=1,
        # 1 with teacher.n_gpu_layers != 0 and the llama-cpp teacher (rules/common.smk), else 0.
        gpu=TEACHER_GPU,
    # On a cluster, profiles/slurm packs several leaves' teacher jobs into one allocation
    # (group-components), and they share one teacher process (labmake.teacher.shared).
    group:
        "teacher"
    script:
        "../scripts/generate.py"
