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


def stage_selection(config: dict) -> dict[str, str]:
    """{"stage1": metric, "stage2": metric} of a resolved config (runs from before the option: "ua")."""
    return {stage: (config.get(stage) or {}).get("metric_for_best_model") or "ua" for stage in ("stage1", "stage2")}


def selection_sentence(config: dict) -> str:
    """ "Checkpoints are selected on validation UA." or, when the stages differ, which stage on which metric."""
    selection = stage_selection(config)
    if selection["stage1"] == selection["stage2"]:
        return f"Checkpoints are selected on validation {metric_title(selection['stage2'])}."
    return (
        f"Checkpoints are selected on validation {metric_title(selection['stage1'])} in stage 1 and on validation "
        f"{metric_title(selection['stage2'])} in stage 2."
    )


def metric_title(metric: str) -> str:
    """'macro-F1' for 'macro_f1' (the field's standard terms), the name itself when unknown."""
    return METRIC_TITLES.get(metric, metric)


__all__ = [
    "METRIC_TITLES",
    "SELECTION_METRICS",
    "metric_title",
    "selection_arguments",
    "selection_sentence",
    "stage_selection",
]
