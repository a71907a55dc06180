"""Stage 0's masked prediction (modeling/pretraining/masked_prediction.py): the loss against a hand computation,
and the spans drawn by the backbone's own mask computation against their configured probability and length."""

import math

import numpy as np
import pytest
import torch
from helpers import tiny_backbone_settings
from transformers import HubertConfig, HubertModel

from modeling.pretraining.masked_prediction import (
    IGNORE_INDEX,
    MaskedPseudoLabelModel,
    masked_prediction_loss,
    span_mask,
)


def tiny_hubert(**overrides) -> HubertModel:
    torch.manual_seed(0)
    settings = tiny_backbone_settings("hubert", **{"mask_time_prob": 0.2, "mask_time_length": 5, **overrides})
    return HubertModel(HubertConfig(**settings)).eval()


def test_masked_prediction_loss_is_the_cross_entropy_of_the_masked_frames_by_hand():
    logits = torch.tensor(
        [
            [[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, 3.0, 0.0], [0.0, 0.0, 4.0]],
            [[-1.0, 2.0, 1.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]],
        ]
    )
    targets = torch.tensor([[0, 2, 1, 0], [1, 0, 2, IGNORE_INDEX]])
    mask = torch.tensor([[True, False, True, True], [False, True, False, True]])
    # masked, valid frames: (0,0) target 0, (0,2) target 1, (0,3) target 0, (1,1) target 0; (1,3) is padding
    by_hand = [
        -(2.0 - math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0))),
        -(3.0 - math.log(math.exp(1.0) + math.exp(3.0) + math.exp(0.0))),
        -(0.0 - math.log(2 + math.exp(4.0))),
        -(3.0 - math.log(math.exp(3.0) + math.exp(1.0) + 1)),
    ]
    assert masked_prediction_loss(logits, targets, mask).item() == pytest.approx(sum(by_hand) / 4, rel=1e-6)


def test_unmasked_frames_contribute_nothing_to_the_loss_or_its_gradient():
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 5, requires_grad=True)
    targets = torch.randint(0, 5, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 1:3] = mask[1, 4] = True
    loss = masked_prediction_loss(logits, targets, mask)
    loss.backward()
    assert (logits.grad[~mask] == 0).all() and (logits.grad[mask] != 0).any()
    changed = logits.detach().clone()
    changed[~mask] += 100 * torch.randn_like(changed[~mask])
    assert masked_prediction_loss(changed, targets, mask).item() == pytest.approx(loss.item(), abs=0)
    assert masked_prediction_loss(logits, targets, torch.zeros_like(mask)).item() == 0.0


def test_the_model_predicts_clusters_of_masked_frames_replaced_by_the_learnt_mask_embedding():
    backbone = tiny_hubert()
    model = MaskedPseudoLabelModel(backbone, clusters=4).eval()
    torch.manual_seed(2)
    input_values = torch.randn(2, 3200)
    outputs = model(input_values)  # evaluation: nothing masked
    frames = outputs["logits"].shape[1]
    labels = torch.randint(0, 4, (2, frames))
    mask = torch.zeros(2, frames, dtype=torch.bool)
    mask[0, 3:8] = mask[1, 10:15] = True
    masked = model(input_values, labels=labels, mask_time_indices=mask)
    logits = masked["logits"].detach().numpy()
    log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    by_hand = -np.mean([log_softmax[b, t, labels[b, t]] for b, t in zip(*np.nonzero(mask.numpy()))])
    assert masked["loss"].item() == pytest.approx(float(by_hand), rel=1e-5)
    assert not torch.allclose(masked["logits"], outputs["logits"])  # masked frames saw masked_spec_embed
    assert model(input_values, labels=labels)["loss"].item() == 0.0  # nothing masked: no loss


def expected_masked_fraction(frames: int, prob: float, length: int) -> float:
    """transformers' draw: n = ⌊prob·frames/length + ε⌋ span starts (ε ~ U[0, 1): E[n] = prob·frames/length) chosen
    without replacement among the frames − length + 1 starts; frame t is masked unless no chosen start covers it:
    P(free) = C(N − c_t, n) / C(N, n), c_t = the starts covering t."""
    x, starts = prob * frames / length, frames - length + 1
    masked = 0.0
    for n, weight in ((math.floor(x), 1 - (x - math.floor(x))), (math.floor(x) + 1, x - math.floor(x))):
        if weight == 0:
            continue
        covering = [min(t, starts - 1) - max(0, t - length + 1) + 1 for t in range(frames)]
        free = [math.comb(starts - c, n) / math.comb(starts, n) for c in covering]
        masked += weight * (1 - sum(free) / frames)
    return masked


@pytest.mark.parametrize("prob, length", [(0.2, 10), (0.2, 5), (0.13, 4)])
def test_spans_follow_the_configured_probability_and_length_over_many_draws(prob, length):
    backbone = tiny_hubert(mask_time_prob=prob, mask_time_length=length, mask_time_min_masks=0)
    np.random.seed(0)
    frames = 200
    draws = np.concatenate([span_mask(backbone, 50, frames) for _ in range(40)])  # 2000 sequences
    expected = expected_masked_fraction(frames, prob, length)
    assert draws.mean() == pytest.approx(expected, abs=0.006)
    for row in draws[:200]:  # every masked run is one span or several overlapping: at least `length` long
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(int), [0]])))
        assert (np.diff(edges)[::2] >= length).all()


def test_one_span_is_exactly_the_configured_length_and_padding_is_never_masked():
    backbone = tiny_hubert(mask_time_prob=0.1, mask_time_length=7, mask_time_min_masks=1)
    np.random.seed(1)
    attention = torch.ones(300, 70, dtype=torch.long)
    attention[:, 50:] = 0  # 50 real frames: 0.1·50/7 < 1, so the minimum of one span
    draws = span_mask(backbone, 300, 70, attention)
    assert (draws.sum(1) == 7).all() and not draws[:, 50:].any()
    starts = draws.argmax(1)
    assert (draws[np.arange(300)[:, None], starts[:, None] + np.arange(7)]).all()  # contiguous
    assert starts.min() == 0 and starts.max() == 50 - 7  # every start position of the real frames is drawn


def test_the_model_refuses_a_backbone_without_a_mask_embedding():
    with pytest.raises(ValueError, match="mask_time_prob > 0"):
        MaskedPseudoLabelModel(tiny_hubert(mask_time_prob=0.0), clusters=3)


def test_activation_checkpointing_gives_the_same_gradients():
    """`training.activation_checkpointing` reaches stage 0's backbone (the Trainer calls the model's
    `activation_checkpointing_enable`): same loss and gradients, recomputed in backward."""
    torch.manual_seed(3)
    input_values, labels = torch.randn(2, 3200), torch.randint(0, 3, (2, 159))
    mask = torch.zeros(2, 159, dtype=torch.bool)
    mask[:, 20:40] = True
    gradients = []
    for checkpointing in (False, True):
        model = MaskedPseudoLabelModel(tiny_hubert(), clusters=3).train()
        torch.manual_seed(4)
        model.projection.reset_parameters()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.backbone.is_activation_checkpointing
        model(input_values, labels=labels, mask_time_indices=mask)["loss"].backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], rtol=1e-5, atol=1e-6)
