"""The two-stage, cross-validated experiment behind `train.py`: run config, trainer, stages, checkpoints, scoring,
the run directory and its results. Modules are imported by name (`modeling.training.experiment`, ...): importing
this package alone imports nothing heavy, so the publishing wing can read a run directory without torch."""
