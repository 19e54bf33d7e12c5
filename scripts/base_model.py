from labmake.stages.train import base_model

base_model(snakemake)
