from labmake.stages.code import code_stamp

code_stamp(snakemake)
