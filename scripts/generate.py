from labmake.stages.generate import generate

generate(snakemake)
