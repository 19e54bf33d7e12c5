from labmake.stages.evaluate import report

report(snakemake)
