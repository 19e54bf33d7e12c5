"""Export: merging adapters, writing GGUF (a family registry) and quantizing."""
