from labmake.stages.evaluate import manifest

manifest(snakemake)
