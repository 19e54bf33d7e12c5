from labmake.stages.card import model_card

model_card(snakemake)
