from labmake.stages.filter import filter

filter(snakemake)
