from labmake.stages.export import quantize

quantize(snakemake)
