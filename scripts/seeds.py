from labmake.stages.taxonomy import seeds

seeds(snakemake)
