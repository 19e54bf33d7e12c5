from labmake.stages.train import train

train(snakemake)
