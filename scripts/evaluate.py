from labmake.stages.evaluate import evaluate

evaluate(snakemake)
