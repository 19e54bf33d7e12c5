from labmake.stages.evaluate import multiple_choice

multiple_choice(snakemake)
