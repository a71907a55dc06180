"""`python -m modeling.timeline ...` is an alias of `python -m modeling.cli.timeline ...` (the timeline CLI).

The pipeline itself is `modeling.FrameAlignedEmotionPipeline` (file `modeling/pipeline_frame_aligned.py`).
"""
