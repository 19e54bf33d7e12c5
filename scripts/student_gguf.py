from labmake.stages.train import student_gguf

student_gguf(snakemake)
