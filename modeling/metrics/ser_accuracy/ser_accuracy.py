"""Speech-emotion-recognition scores: UA (unweighted accuracy), WA (weighted accuracy), macro-F1, per-class
precision / recall / F1, confusion matrix.

A local `evaluate` module: `evaluate.load("path/to/ser_accuracy")` works offline.
"""

import datasets
import evaluate
import numpy as np


_DESCRIPTION = """
UA (unweighted accuracy, also "balanced accuracy"): the mean over classes of per-class recall, so every class
counts the same whatever its size.
WA (weighted accuracy): the fraction of correctly classified examples (plain accuracy).
Macro-F1: the mean over classes of per-class F1 = 2·TP / (2·TP + FP + FN) (scikit-learn's
`f1_score(labels=<the classes with references>, average="macro", zero_division=0)`; a class that is never predicted
has F1 0). The ranking metric of the Odyssey 2024 SER challenge (MSP-Podcast).
One rule for a class without references (e.g. a class of the model that the scored corpus lacks): it is not
scored. Its recall, precision and F1 are `None` and it is left out of UA and macro-F1 alike; predictions of it
still count as errors of the true classes (they lower those classes' recall and F1, and WA).
The confusion matrix has one row per true class and one column per predicted class (counts).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    num_labels (`int`, *optional*): number of classes; defaults to 1 + the largest id seen. Fixes the size of
        the confusion matrix, so that classes nobody predicted still get a column.
Returns:
    ua (`float`): mean per-class recall, in [0, 1].
    wa (`float`): accuracy, in [0, 1].
    macro_f1 (`float`): mean per-class F1 over the classes present in the references, in [0, 1].
    per_class_recall (`list` of `float` or `None`): recall of each class (`None` for classes absent from the
        references).
    per_class_precision (`list` of `float` or `None`): precision of each class (`None` for classes absent from the
        references, and for classes never predicted: 0/0).
    per_class_f1 (`list` of `float` or `None`): F1 of each class (`None` for classes absent from the references).
    support (`list` of `int`): number of references of each class.
    confusion_matrix (`list` of `list` of `int`): (num_labels, num_labels), rows = true, columns = predicted.
Examples:
    >>> metric = evaluate.load("modeling/metrics/ser_accuracy")
    >>> metric.compute(predictions=[0, 0, 1, 1], references=[0, 1, 1, 1], num_labels=2)["ua"]
    0.8333333333333333
"""

_CITATION = """
@article{byun2025frame,
  title={Frame and Utterance Emotional Alignment for Speech Emotion Recognition},
  author={Byun, Seounghoon and Lee, Seok-Pil},
  journal={Future Internet}, volume={17}, number={11}, pages={509}, year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SerAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("ser_accuracy: no predictions to score.")
        num_labels = int(num_labels) if num_labels is not None else int(max(predictions.max(), references.max())) + 1
        out_of_range = [int(i) for i in np.concatenate([predictions, references]) if not 0 <= i < num_labels]
        if out_of_range:
            raise ValueError(f"ser_accuracy: class ids must be in [0, {num_labels}), got {sorted(set(out_of_range))}.")

        matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
        np.add.at(matrix, (references, predictions), 1)
        support, predicted, hits = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
        recall = [float(hits[c] / support[c]) if support[c] else None for c in range(num_labels)]
        # A class without references is not scored (see the description): None for all three, out of both means.
        precision = [float(hits[c] / predicted[c]) if support[c] and predicted[c] else None for c in range(num_labels)]
        f1 = [float(2 * hits[c] / (support[c] + predicted[c])) if support[c] else None for c in range(num_labels)]
        return {
            "ua": float(np.mean([r for r in recall if r is not None])),
            "wa": float(np.trace(matrix) / matrix.sum()),
            "macro_f1": float(np.mean([value for value in f1 if value is not None])),
            "per_class_recall": recall,
            "per_class_precision": precision,
            "per_class_f1": f1,
            "support": support.tolist(),
            "confusion_matrix": matrix.tolist(),
        }
