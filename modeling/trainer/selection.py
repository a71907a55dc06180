"""Checkpoint selection: the validation metric that picks a stage's best checkpoint, and its direction.

`FrameAlignedTrainer` evaluates `ua`, `wa`, `macro_f1` (`modeling.metrics.make_compute_metrics`) and the
validation `loss` (the training objective on the consensus labels: utterance term + λ·EAL + λ·FUAL). Larger is
better for the scores, smaller for the loss; `TrainingArguments.greater_is_better` must say so, or the Trainer keeps
the worst checkpoint.
"""

SELECTION_METRICS = ("ua", "wa", "macro_f1", "loss")
METRIC_TITLES = {"ua": "UA", "wa": "WA", "macro_f1": "macro-F1", "loss": "loss"}


def selection_arguments(metric: str) -> dict:
    """The `TrainingArguments` fields that select on `metric` (one of `SELECTION_METRICS`).

    Raises:
        ValueError: an unknown metric.
    """
    if metric not in SELECTION_METRICS:
        raise ValueError(f"metric_for_best_model must be one of {list(SELECTION_METRICS)}, got {metric!r}.")
    return {"metric_for_best_model": metric, "greater_is_better": metric != "loss"}


def metric_title(metric: str) -> str:
    """'macro-F1' for 'macro_f1' (the field's standard terms), the name itself when unknown."""
    return METRIC_TITLES.get(metric, metric)


__all__ = ["METRIC_TITLES", "SELECTION_METRICS", "metric_title", "selection_arguments"]
