"""A finished run directory → model cards → Hugging Face Hub repositories. Needs no torch: it reads JSON/YAML and
files, and computes the remote code to upload from the core's files on disk."""
