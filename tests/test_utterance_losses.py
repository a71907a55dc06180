"""The utterance loss options (class weights, focal loss, soft targets) against hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling.losses import class_weights_from_counts, utterance_loss


def test_inverse_weights_from_counts_by_hand_and_match_sklearn_balanced():
    counts = [10, 30, 60]  # N = 100, C = 3: w_c = N / (C n_c)
    weights = class_weights_from_counts(counts, "inverse")
    assert weights.tolist() == pytest.approx([100 / 30, 100 / 90, 100 / 180], rel=1e-6)
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 10 + [1] * 30 + [2] * 60
    balanced = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labels)
    assert weights.tolist() == pytest.approx(balanced.tolist(), rel=1e-6)


def test_inverse_sqrt_weights_by_hand_and_average_example_weight_is_one():
    counts = [4, 16, 64]  # 1/sqrt: 1/2, 1/4, 1/8; Σ n_c·raw = 2 + 4 + 8 = 14; scale N / 14 = 84 / 14 = 6
    weights = class_weights_from_counts(counts, "inverse_sqrt")
    assert weights.tolist() == pytest.approx([3.0, 1.5, 0.75], rel=1e-6)
    assert sum(n * w for n, w in zip(counts, weights.tolist())) / sum(counts) == pytest.approx(1.0)


def test_weights_refuse_an_empty_class_and_an_unknown_scheme():
    with pytest.raises(ValueError, match=r"classes \[1\].*no examples"):
        class_weights_from_counts([3, 0, 2])
    with pytest.raises(ValueError, match="inverse_sqrt"):
        class_weights_from_counts([3, 2], "inverse_square")


LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 1.5]])
LABELS = torch.tensor([0, 2])


def probabilities(row):
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def test_plain_options_are_exactly_the_models_cross_entropy():
    assert torch.equal(utterance_loss(LOGITS, LABELS), F.cross_entropy(LOGITS, LABELS))
    # γ = 0 with an explicit one-hot distribution: the same value
    one_hot = F.one_hot(LABELS, 3).float()
    assert utterance_loss(LOGITS, target_distribution=one_hot).item() == pytest.approx(
        F.cross_entropy(LOGITS, LABELS).item(), rel=1e-6
    )


def test_weighted_cross_entropy_by_hand_is_a_plain_batch_mean():
    weights = torch.tensor([2.0, 1.0, 0.5])
    p = [probabilities(row) for row in LOGITS.tolist()]
    expected = (-2.0 * math.log(p[0][0]) - 0.5 * math.log(p[1][2])) / 2
    assert utterance_loss(LOGITS, LABELS, class_weights=weights).item() == pytest.approx(expected, rel=1e-6)
    # = torch's weighted CE summed, divided by B (torch's own mean divides by Σ w_{y_i} = 2.5 instead)
    summed = F.cross_entropy(LOGITS, LABELS, weight=weights, reduction="sum").item()
    assert expected == pytest.approx(summed / 2, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_loss_matches_its_formula(gamma):
    p = [probabilities(row) for row in LOGITS.tolist()]
    p_t = [p[0][0], p[1][2]]
    expected = sum(-((1 - q) ** gamma) * math.log(q) for q in p_t) / 2
    assert utterance_loss(LOGITS, LABELS, focal_gamma=gamma).item() == pytest.approx(expected, rel=1e-6)
    if gamma == 0:
        assert utterance_loss(LOGITS, LABELS, focal_gamma=gamma).item() == F.cross_entropy(LOGITS, LABELS).item()


def test_soft_target_cross_entropy_by_hand_with_weights_and_focal():
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1 / 3, 2 / 3]])
    p = [probabilities(row) for row in LOGITS.tolist()]
    first = 0.5 * math.log(p[0][0]) + 0.5 * math.log(p[0][1])
    second = math.log(p[1][1]) / 3 + 2 * math.log(p[1][2]) / 3
    plain = -(first + second) / 2
    assert utterance_loss(LOGITS, target_distribution=targets).item() == pytest.approx(plain, rel=1e-6)
    weights, gamma = [2.0, 1.0, 0.5], 1.0
    full = 0.0
    for target, probs in zip(targets.tolist(), p):
        full += sum(-w * y * (1 - q) ** gamma * math.log(q) for w, y, q in zip(weights, target, probs))
    got = utterance_loss(LOGITS, target_distribution=targets, class_weights=torch.tensor(weights), focal_gamma=gamma)
    assert got.item() == pytest.approx(full / 2, rel=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        utterance_loss(LOGITS, LABELS, focal_gamma=-0.5)
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        utterance_loss(LOGITS, target_distribution=torch.ones(2, 2) / 2)
    with pytest.raises(ValueError, match=r"class_weights has shape \(2,\)"):
        utterance_loss(LOGITS, LABELS, class_weights=torch.ones(2))
