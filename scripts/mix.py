from labmake.stages.mix import mix

mix(snakemake)
