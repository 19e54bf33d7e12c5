rule code_stamp:
    # One small file per rule script: the hashes of the labmake files it runs and of the lock.
    # Rules take it as their code input instead of each of those files: at thousands of leaves
    # Snakemake then checks one code input per job, not fifty. A touched but unchanged file
    # leaves the stamp's content, so nothing downstream, as it was.
    input:
        code_files,
    output:
        paths.CODE_STAMP,
    log:
        paths.log("code_stamp", "{script}"),
    localrule: True
    script:
        "../scripts/code_stamp.py"
