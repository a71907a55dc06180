"""Stage 0: continued pre-training of the backbone before stage 1 (FLEA's frame-level pseudo-emotion labels and
masked prediction; docs/flea.md)."""
