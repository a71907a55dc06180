"""The stage-2 frozen-prefix cache (`stage2.cache_frozen_prefix`): the frozen part of the backbone is run once per
clip (`cache`), its output cut and stored (`model`: where the cut goes, which backbones allow it), and stage 2 trains
on the stored frames (`trainer`). See `model.py` for the whole picture."""
