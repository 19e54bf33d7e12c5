from labmake.stages.export import merge

merge(snakemake)
