from labmake.stages.retention import lm_eval

lm_eval(snakemake)
