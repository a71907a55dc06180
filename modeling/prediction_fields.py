"""The predictions vocabulary: the one owner of the names every output gives a prediction, in every CSV, JSON line,
pipeline result and document of this project.

- `label`: the true class (as 🤗 datasets' `label` column). Only where the truth is known: `predictions_<split>.csv`,
  score.py's `predictions.csv`.
- `predicted`: the predicted class, the most probable one.
- `prob_<class>`: the probability of each class, one field per class in the model's label order (`id2label`): the
  softmax of the logits divided by the checkpoint's calibration temperature (`softmax` below, the project's one
  softmax; `calibration_temperature`), the mean of the fold models' for an ensemble, for a timeline segment the
  mean of its (smoothed, uncalibrated) frame distributions put on the same scale with the same T (`tempered`): one
  result, one scale, and calibration changes no label.

"score" never names a probability here: it means an evaluation metric (score.py's `scores.json`: UA, WA, macro-F1).
transformers' own `audio-classification` pipeline keeps its format (`[{"label", "score"}]`, `label` the predicted
class): that is transformers' vocabulary, not ours.

Self-contained (numpy only): the pipeline imports it, so it is uploaded with every checkpoint as remote code.
"""

from collections.abc import Sequence

import numpy as np


LABEL = "label"
PREDICTED = "predicted"
PROBABILITY_PREFIX = "prob_"


def probability_field(class_name: str) -> str:
    """`prob_<class>`: the field of one class's probability."""
    return f"{PROBABILITY_PREFIX}{class_name}"


def probability_fields(classes: Sequence[str]) -> list[str]:
    """`prob_<class>` of every class, in order."""
    return [probability_field(name) for name in classes]


def softmax(logits, temperature: float | None = None) -> np.ndarray:
    """Row-wise softmax of (..., C) logits, computed stably in float64: softmax(logits / T) with the calibration
    temperature T (`temperature`; None or 1: the plain softmax). Temperature scaling (Guo et al., ICML 2017) leaves
    the argmax unchanged: the predicted class is the same, only the probabilities are calibrated.

    Raises:
        ValueError: a temperature that is not a positive finite number.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if temperature is not None:
        logits = logits / checked_temperature(temperature)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def tempered(distribution, temperature: float | None = None) -> np.ndarray:
    """Row-wise temperature of (..., C) probability distributions: p^(1/T) / Σ p^(1/T) = softmax(log p / T), so for
    p = softmax(z) it equals softmax(z / T) exactly. It puts a distribution that is not one softmax (a segment's mean
    of frame distributions) on the scale of the calibrated ones, keeping its argmax. None or 1: unchanged (float64).

    Raises:
        ValueError: a temperature that is not a positive finite number.
    """
    distribution = np.asarray(distribution, dtype=np.float64)
    if temperature is None or temperature == 1:
        return distribution
    powered = distribution ** (1.0 / checked_temperature(temperature))
    return powered / powered.sum(axis=-1, keepdims=True)


def checked_temperature(temperature) -> float:
    """`temperature` as a float; ValueError unless it is a positive finite number."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"a calibration temperature must be a positive finite number, got {temperature!r}.")
    return value


def calibration_temperature(config, calibrated: bool = True) -> float:
    """The temperature T a model's probabilities are computed with: its config's `calibration_temperature` (fitted
    on the validation split after checkpoint selection; docs/evaluation_breakdowns_calibration.md), 1.0 when the
    checkpoint has none or `calibrated` is False (the raw softmax)."""
    value = getattr(config, "calibration_temperature", None) if calibrated else None
    return 1.0 if value is None else checked_temperature(value)


def prediction_record(distribution, classes: Sequence[str]) -> dict:
    """{"predicted": the most probable class, "prob_<class>": probability, ...} of one (C,) distribution."""
    distribution = np.asarray(distribution, dtype=np.float64)
    if distribution.shape != (len(classes),):
        raise ValueError(
            f"a distribution over {len(classes)} classes has shape ({len(classes)},), got {distribution.shape}."
        )
    record = {PREDICTED: classes[int(distribution.argmax())]}
    record.update({probability_field(name): float(p) for name, p in zip(classes, distribution)})
    return record


def probabilities_of(record: dict) -> dict[str, float]:
    """{class: probability} from the `prob_<class>` fields of a record (a pipeline result, a segment, a CSV row), in
    their order."""
    return {
        key[len(PROBABILITY_PREFIX) :]: float(value)
        for key, value in record.items()
        if key.startswith(PROBABILITY_PREFIX)
    }


__all__ = [
    "LABEL",
    "PREDICTED",
    "PROBABILITY_PREFIX",
    "calibration_temperature",
    "checked_temperature",
    "prediction_record",
    "probabilities_of",
    "probability_field",
    "probability_fields",
    "softmax",
    "tempered",
]
