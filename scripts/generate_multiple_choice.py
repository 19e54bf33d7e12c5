from labmake.stages.evaluate import generate_multiple_choice

generate_multiple_choice(snakemake)
