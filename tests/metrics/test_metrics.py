"""UA / WA / confusion matrix against hand-computed values; the local evaluate module loads offline."""

import numpy as np
import pytest
from transformers import EvalPrediction

from modeling.metrics import SER_ACCURACY_PATH, compute_ser_metrics, load_ser_accuracy, make_compute_metrics


def test_hand_computed_example():
    # 10 examples, 3 classes (support 5 / 3 / 2).
    references = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    predictions = [0, 0, 0, 1, 2, 1, 1, 0, 2, 1]
    metrics = compute_ser_metrics(predictions, references, num_labels=3)
    # recalls 3/5, 2/3, 1/2 → UA = (0.6 + 0.6667 + 0.5) / 3; WA = 6 / 10
    assert metrics["per_class_recall"] == pytest.approx([0.6, 2 / 3, 0.5])
    assert metrics["ua"] == pytest.approx((0.6 + 2 / 3 + 0.5) / 3)
    assert metrics["wa"] == pytest.approx(0.6)
    assert metrics["confusion_matrix"] == [[3, 1, 1], [1, 2, 0], [0, 1, 1]]


def test_ua_differs_from_wa_on_imbalanced_data():
    # Always predicting the majority class: WA 0.9, UA 0.5.
    metrics = compute_ser_metrics([0] * 10, [0] * 9 + [1], num_labels=2)
    assert (metrics["wa"], metrics["ua"]) == (pytest.approx(0.9), pytest.approx(0.5))


def test_class_absent_from_references_is_left_out_of_ua_but_kept_in_the_matrix():
    metrics = compute_ser_metrics([0, 2, 1, 1], [0, 0, 1, 1], num_labels=4)
    assert metrics["per_class_recall"] == [0.5, 1.0, None, None]
    assert metrics["ua"] == pytest.approx(0.75)
    assert np.array(metrics["confusion_matrix"]).shape == (4, 4)
    assert metrics["confusion_matrix"][0] == [1, 0, 1, 0]


def test_module_loads_by_path_and_validates_ids():
    metric = load_ser_accuracy()
    assert (SER_ACCURACY_PATH / "ser_accuracy.py").is_file()
    assert metric.compute(predictions=[1, 1], references=[1, 0])["wa"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"class ids must be in \[0, 2\), got \[2\]"):
        metric.compute(predictions=[2, 1], references=[1, 0], num_labels=2)


def test_trainer_compute_metrics_takes_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = np.array([0, 1, 2, 2])
    metrics = make_compute_metrics(3)(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics == {"ua": pytest.approx((1 + 1 + 0.5) / 3), "wa": pytest.approx(0.75)}
