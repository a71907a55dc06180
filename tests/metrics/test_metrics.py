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
    # class 0: TP 1, predicted 2, support 1 → F1 = 2/3; class 1: 1; class 2: TP 1, predicted 1, support 2 → 2/3
    assert metrics == {
        "ua": pytest.approx((1 + 1 + 0.5) / 3),
        "wa": pytest.approx(0.75),
        "macro_f1": pytest.approx((2 / 3 + 1 + 2 / 3) / 3),
    }


def test_macro_f1_and_per_class_precision_recall_f1_by_hand():
    # The example above: confusion [[3, 1, 1], [1, 2, 0], [0, 1, 1]] (rows true, columns predicted).
    references = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    predictions = [0, 0, 0, 1, 2, 1, 1, 0, 2, 1]
    metrics = compute_ser_metrics(predictions, references, num_labels=3)
    # precision = TP / column sum: 3/4, 2/4, 1/2; recall = TP / row sum: 3/5, 2/3, 1/2
    assert metrics["per_class_precision"] == pytest.approx([0.75, 0.5, 0.5])
    # F1 = 2PR/(P+R): 2·.75·.6/1.35 = 2/3; 2·.5·(2/3)/(7/6) = 4/7; 0.5
    assert metrics["per_class_f1"] == pytest.approx([2 / 3, 4 / 7, 0.5])
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 7 + 0.5) / 3)
    assert metrics["support"] == [5, 3, 2]


def test_macro_f1_matches_scikit_learn_with_absent_and_never_predicted_classes():
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    # class 2 is never predicted (precision undefined → 0 in the mean), class 3 only predicted, class 4 absent
    references = [0, 0, 1, 1, 1, 2, 2, 0]
    predictions = [0, 1, 1, 1, 3, 0, 1, 0]
    metrics = compute_ser_metrics(predictions, references, num_labels=5)
    assert metrics["per_class_precision"] == [pytest.approx(2 / 3), 0.5, None, None, None]
    assert metrics["per_class_f1"] == [pytest.approx(2 / 3), pytest.approx(4 / 7), 0.0, None, None]
    # over the classes with references (0, 1, 2): scikit-learn's macro F1 with those labels
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 4 / 7) / 3)
    present = [0, 1, 2]
    assert metrics["macro_f1"] == pytest.approx(
        f1_score(references, predictions, labels=present, average="macro", zero_division=0)
    )
    _, _, f1, _ = precision_recall_fscore_support(references, predictions, labels=present, zero_division=0)
    assert [metrics["per_class_f1"][c] for c in present] == pytest.approx(f1)


def test_one_rule_for_a_class_the_references_lack():
    """Issue 19: a run class the scored corpus lacks was left out of UA but counted as F1 = 0 in macro-F1
    (`per_class_recall: null` but `per_class_f1: 0.0`). One rule for UA, macro-F1 and every per-class value: a class
    without references is not scored (null, left out of both means); predictions of it are errors of the true
    class (they lower its recall and F1, and WA)."""
    references = [0, 0, 0, 1, 1, 1]
    predictions = [0, 0, 2, 1, 1, 2]  # class 2 is a run class the corpus lacks, predicted twice
    metrics = compute_ser_metrics(predictions, references, num_labels=3)
    assert metrics["per_class_recall"][2] is None
    assert metrics["per_class_precision"][2] is None and metrics["per_class_f1"][2] is None
    assert metrics["ua"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    # F1 of classes 0 and 1: TP 2, FN 1, FP 0 → 2·2 / (2·2 + 1) = 0.8 each
    assert metrics["per_class_f1"][:2] == pytest.approx([0.8, 0.8])
    assert metrics["macro_f1"] == pytest.approx(0.8)
    assert metrics["wa"] == pytest.approx(4 / 6)
