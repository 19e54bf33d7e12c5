"""Training: students, data encoding and packing, the loop, resume and launch."""
