from labmake.stages.retention import retention_reference

retention_reference(snakemake)
