"""UA / WA / macro-F1 / per-class precision, recall, F1 / confusion matrix as a local `evaluate` module (loaded by
path, so it works offline).

`ser_accuracy/ser_accuracy.py` is the module; the helpers here load it once and adapt it to the `Trainer`.
"""

import functools
from pathlib import Path

import numpy as np


SER_ACCURACY_PATH = Path(__file__).resolve().parent / "ser_accuracy"


@functools.lru_cache(maxsize=1)
def load_ser_accuracy():
    """The `ser_accuracy` evaluate module (in-memory: no cache files, safe with several processes)."""
    import evaluate

    return evaluate.load(str(SER_ACCURACY_PATH), keep_in_memory=True)


def compute_ser_metrics(predictions, references, num_labels: int) -> dict:
    """{"ua", "wa", "macro_f1", "per_class_recall", "per_class_precision", "per_class_f1", "support",
    "confusion_matrix"} of class ids (fractions in [0, 1]; see `ser_accuracy.py` for the definitions).

    predictions, references: (num_examples,) int class ids in [0, num_labels).
    """
    return load_ser_accuracy().compute(
        predictions=[int(p) for p in predictions], references=[int(r) for r in references], num_labels=num_labels
    )


def make_compute_metrics(num_labels: int):
    """`compute_metrics` for the `Trainer`: logits → {"ua", "wa", "macro_f1"} (scalars only, so they can be logged)."""

    def compute_metrics(eval_prediction) -> dict[str, float]:
        logits = eval_prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        metrics = compute_ser_metrics(np.argmax(logits, axis=-1), eval_prediction.label_ids, num_labels)
        return {"ua": metrics["ua"], "wa": metrics["wa"], "macro_f1": metrics["macro_f1"]}

    return compute_metrics


__all__ = ["SER_ACCURACY_PATH", "compute_ser_metrics", "load_ser_accuracy", "make_compute_metrics"]
