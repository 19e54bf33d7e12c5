from labmake.stages.export import gguf_f16

gguf_f16(snakemake)
