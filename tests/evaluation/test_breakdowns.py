"""Per-speaker and per-gender breakdowns (modeling/evaluation/breakdowns.py): values by hand, the bootstrap interval's
coverage over repeated seeded draws, merging folds, the tables, and compare_runs' per-group differences."""

import json

import numpy as np
import pytest

from modeling.evaluation.breakdowns import (
    MIN_GROUP_SIZE,
    breakdown_table,
    breakdowns,
    group_scores,
    merge_breakdowns,
    short_breakdown_table,
)
from modeling.metrics import compute_ser_metrics


# Speaker a (female): labels 0 0 1 1 2, predicted 0 1 1 1 0. Speaker b (male): labels 1 1 1, predicted 1 1 0.
LABELS = np.array([0, 0, 1, 1, 2, 1, 1, 1])
PREDICTED = np.array([0, 1, 1, 1, 0, 1, 1, 0])
SPEAKERS = ["a"] * 5 + ["b"] * 3
GENDERS = ["female"] * 5 + ["male"] * 3


def test_per_speaker_scores_by_hand():
    b = breakdowns(LABELS, PREDICTED, {"speaker": SPEAKERS, "gender": GENDERS}, num_labels=3)
    a = b["speaker"]["a"]
    # a: recalls 1/2, 2/2, 0/1 → UA 1/2; WA 3/5; F1: class 0 2·1/(2+2), class 1 2·2/(2+3), class 2 0 → mean 13/30.
    assert (a["n"], a["ua"], a["wa"]) == (5, pytest.approx(0.5), pytest.approx(0.6))
    assert a["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # b says only class 1: UA and macro-F1 over class 1 alone (the ser_accuracy rule): recall 2/3, F1 2·2/(3+2).
    s = b["speaker"]["b"]
    assert (s["ua"], s["wa"], s["macro_f1"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(0.8))
    assert b["gender"]["female"]["ua"] == a["ua"] and b["gender"]["male"]["macro_f1"] == s["macro_f1"]
    assert b["worst_speaker"] == {"speaker": "a", "n": 5, "ua": pytest.approx(0.5)}
    # Groups under MIN_GROUP_SIZE utterances are listed, marked, without an interval.
    assert MIN_GROUP_SIZE > 5 and a["too_small"] and a["interval"] is None
    table = breakdown_table(b)
    assert "| speaker a (too small for an interval) | 5 | 50.0 | 60.0 | 43.3 |" in table
    assert "Worst speaker: a (UA 50.0 %, n = 5)" in table
    assert "| worst speaker (a) (too small for an interval) | 5 | 50.0 | 43.3 |" in short_breakdown_table(b)


def test_group_scores_agree_with_ser_accuracy_and_unknown_gender():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 60)
    predicted = np.where(rng.random(60) < 0.6, labels, rng.integers(0, 4, 60))
    b = breakdowns(labels, predicted, {"speaker": ["x"] * 60, "gender": [""] * 60}, num_labels=4)
    reference = compute_ser_metrics(predicted, labels, 4)
    for key in ("ua", "wa", "macro_f1"):
        assert b["speaker"]["x"][key] == pytest.approx(reference[key])
    assert list(b["gender"]) == ["unknown"] and b["speaker"]["x"]["confusion_matrix"] == reference["confusion_matrix"]
    low, high = b["speaker"]["x"]["interval"]["ua"]
    assert low < reference["ua"] < high
    assert breakdowns(labels, predicted, {"speaker": ["x"] * 60}, 4, seed=0) == {**b, "gender": {}}  # seeded
    with pytest.raises(ValueError, match="59 speaker values for 60 utterances"):
        breakdowns(labels, predicted, {"speaker": ["x"] * 59}, 4)


def test_bootstrap_interval_covers_the_true_ua_at_the_stated_rate():
    """200 groups of 120 utterances drawn from a known classifier (true recalls 0.8 and 0.6: UA 0.7); the 95 %
    interval must cover 0.7 in about 95 % of them. Fixed seed: the count is deterministic (a statistical test, not
    a flaky one); the bounds allow the percentile bootstrap's known slight under-coverage."""
    rng = np.random.default_rng(2024)
    covered, repetitions = 0, 200
    for r in range(repetitions):
        labels = rng.integers(0, 2, 120)
        right = rng.random(120) < np.where(labels == 0, 0.8, 0.6)
        predicted = np.where(right, labels, 1 - labels)
        matrix = np.zeros((2, 2), dtype=int)
        np.add.at(matrix, (labels, predicted), 1)
        low, high = group_scores(matrix, resamples=400, seed=r)["interval"]["ua"]
        covered += low <= 0.7 <= high
    assert 0.90 <= covered / repetitions <= 0.99, covered


def test_merged_folds_equal_the_breakdown_of_all_utterances():
    rng = np.random.default_rng(5)
    labels, predicted = rng.integers(0, 3, 90), rng.integers(0, 3, 90)
    speakers = [f"s{i % 6}" for i in range(90)]
    genders = ["female" if i % 6 < 3 else "male" for i in range(90)]
    folds = [slice(0, 30), slice(30, 90)]
    parts = [breakdowns(labels[f], predicted[f], {"speaker": speakers[f], "gender": genders[f]}, 3) for f in folds]
    assert merge_breakdowns(parts, 3) == breakdowns(labels, predicted, {"speaker": speakers, "gender": genders}, 3)
    assert merge_breakdowns([None, {}], 3) == {}


def test_compare_runs_per_group_differences(tmp_path):
    """results.json breakdowns of two runs → compare_runs' per-group Δ, by hand."""
    from test_evaluation import synthetic_runs

    from modeling.evaluation.compare import compare_runs, comparison_markdown

    synthetic_runs(tmp_path)
    first = breakdowns(LABELS, PREDICTED, {"speaker": SPEAKERS, "gender": GENDERS}, 3)
    better = breakdowns(LABELS, LABELS, {"speaker": SPEAKERS, "gender": GENDERS}, 3)  # every prediction right
    for name, b in (("a", first), ("b", better)):
        path = tmp_path / name / "results.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "breakdowns": b}))
    report = compare_runs([tmp_path / "a", tmp_path / "b"], resamples=2000)
    groups = report["comparisons"][0]["per_group"]
    assert groups["speaker"]["a"] == {
        "n": 5,
        "ua": pytest.approx(0.5),
        "wa": pytest.approx(0.4),
        "macro_f1": 0.5666666666666667,
    }
    assert groups["gender"]["male"]["ua"] == pytest.approx(1 / 3)
    assert "| speaker a | 5 | +50.00 | +40.00 | +56.67 |" in comparison_markdown(report)
