"""EAL and FUAL against hand-computed values (docs/method.md)."""

import math

import pytest
import torch

from modeling.losses import emotional_attention_loss, frame_utterance_alignment_loss


def softplus(x):
    return math.log1p(math.exp(x))


def test_eal_matches_hand_computed_value_and_ignores_padding():
    utterance = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    frames = torch.tensor(
        [
            [[3.0, 0.0], [0.0, 5.0], [7.0, 7.0]],  # cos = 1, 0, (padding)
            [[0.0, -3.0], [9.0, 9.0], [-1.0, 4.0]],  # cos = -1, (padding), (padding)
        ]
    )
    mask = torch.tensor([[True, True, False], [True, False, False]])
    m = 0.8
    expected = ((softplus(m - 1) + softplus(m - 0)) / 2 + softplus(m + 1)) / 2
    loss = emotional_attention_loss(utterance, frames, mask, margin=m)
    assert loss.item() == pytest.approx(expected, rel=1e-6)

    # Whatever sits in padded frames does not matter.
    frames_changed = frames.clone()
    frames_changed[0, 2] = torch.tensor([-100.0, 3.0])
    frames_changed[1, 1:] = 42.0
    assert emotional_attention_loss(utterance, frames_changed, mask, margin=m).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_eal_margin_shifts_the_softplus():
    utterance = torch.tensor([[1.0, 0.0]])
    frames = torch.tensor([[[1.0, 1.0]]])  # cos = 1/sqrt(2)
    mask = torch.tensor([[True]])
    for m in (0.0, 0.5, 1.0):
        expected = softplus(m - 1 / math.sqrt(2))
        assert emotional_attention_loss(utterance, frames, mask, m).item() == pytest.approx(expected, rel=1e-6)


def hand_fual(q, frame_probs, alphas):
    p_bar = [sum(a * p[c] for a, p in zip(alphas, frame_probs)) for c in range(len(q))]
    return sum(qc * math.log(qc / pc) for qc, pc in zip(q, p_bar))


def test_fual_matches_hand_computed_value_and_ignores_padding():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])  # q = (1/4, 3/4), (2/3, 1/3)
    frame_logits = torch.tensor(
        [
            [[0.0, 0.0], [math.log(3.0), 0.0], [50.0, -50.0]],  # p = (1/2,1/2), (3/4,1/4), padding
            [[0.0, math.log(4.0)], [0.0, 0.0], [-9.0, 9.0]],  # p = (1/5,4/5), (1/2,1/2), (1/2... padding)
        ]
    )
    weights = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.75, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, False]])
    expected = (
        hand_fual([0.25, 0.75], [(0.5, 0.5), (0.75, 0.25)], [0.5, 0.5])
        + hand_fual([2 / 3, 1 / 3], [(0.2, 0.8), (0.5, 0.5)], [0.25, 0.75])
    ) / 2
    loss = frame_utterance_alignment_loss(logits, frame_logits, weights, mask)
    assert loss.item() == pytest.approx(expected, rel=1e-5)

    frame_logits_changed = frame_logits.clone()
    frame_logits_changed[:, 2] = torch.tensor([-300.0, 300.0])
    assert frame_utterance_alignment_loss(logits, frame_logits_changed, weights, mask).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_fual_is_zero_when_frames_agree_with_the_utterance():
    logits = torch.tensor([[1.0, -2.0, 0.5]])
    frame_logits = logits[:, None, :].repeat(1, 4, 1)
    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    loss = frame_utterance_alignment_loss(logits, frame_logits, weights, torch.ones(1, 4, dtype=torch.bool))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_fual_is_stable_for_extreme_logits_and_underflowing_weights():
    """log p̄ comes from log-sum-exp: frame probabilities of e^-1000 must not become log(0)."""
    logits = torch.tensor([[0.0, 0.0]], requires_grad=True)
    frame_logits = torch.tensor([[[1000.0, -1000.0], [-1000.0, 1000.0], [0.0, 0.0]]], requires_grad=True)
    scores = torch.tensor([[0.0, 0.0, -200.0]], requires_grad=True)  # α_3 underflows to 0 in float32
    weights = scores.softmax(-1)
    assert weights[0, 2].item() == 0.0
    loss = frame_utterance_alignment_loss(logits, frame_logits, weights, torch.ones(1, 3, dtype=torch.bool))
    # p̄ = (1/2, 1/2) = q  → KL = 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    for tensor in (logits, frame_logits, scores):
        assert torch.isfinite(tensor.grad).all()


def test_fual_detach_target_stops_gradient_through_q():
    logits = torch.tensor([[2.0, -1.0]], requires_grad=True)
    frame_logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], requires_grad=True)
    weights = torch.tensor([[0.3, 0.7]])
    mask = torch.ones(1, 2, dtype=torch.bool)

    frame_utterance_alignment_loss(logits, frame_logits, weights, mask, detach_target=True).backward()
    assert logits.grad is None  # q is a constant: no gradient reaches the utterance logits
    assert torch.count_nonzero(frame_logits.grad) > 0

    frame_utterance_alignment_loss(logits, frame_logits, weights, mask).backward()
    assert torch.count_nonzero(logits.grad) > 0


@pytest.mark.parametrize("dtype", [torch.bool, torch.long, torch.int32, torch.uint8, torch.float32])
def test_both_losses_accept_bool_and_01_masks_identically(dtype):
    """transformers' masks are 0/1 integers; ours bool: both losses (and their gradients) must not care."""
    torch.manual_seed(3)
    lengths = torch.tensor([5, 3])
    bool_mask = torch.arange(5)[None] < lengths[:, None]
    utterance, frames = torch.randn(2, 8, requires_grad=True), torch.randn(2, 5, 8)
    logits, frame_logits = torch.randn(2, 4, requires_grad=True), torch.randn(2, 5, 4)
    weights = torch.softmax(torch.randn(2, 5).masked_fill(~bool_mask, float("-inf")), dim=-1)
    results = {}
    for mask in (bool_mask, bool_mask.to(dtype)):
        eal = emotional_attention_loss(utterance, frames, mask, 0.8)
        fual = frame_utterance_alignment_loss(logits, frame_logits, weights, mask)
        grads = torch.autograd.grad(eal + fual, (utterance, logits))
        results[mask.dtype] = (eal.detach(), fual.detach(), *grads)
    for reference, value in zip(results[torch.bool], results[dtype]):
        torch.testing.assert_close(value, reference, rtol=0, atol=0)
    # Hand value of EAL on the second utterance: mean over its 3 valid frames only.
    cos = torch.nn.functional.cosine_similarity(utterance[1:2].detach(), frames[1, :3], dim=-1)
    expected = torch.nn.functional.softplus(0.8 - cos).mean()
    assert emotional_attention_loss(
        utterance[1:2], frames[1:2], bool_mask[1:2].to(dtype), 0.8
    ).item() == pytest.approx(expected.item(), rel=1e-6)


def test_masks_with_other_values_are_refused():
    with pytest.raises(ValueError, match="frame_mask must be bool or hold only 0 and 1"):
        frame_utterance_alignment_loss(
            torch.zeros(1, 2), torch.zeros(1, 3, 2), torch.ones(1, 3) / 3, torch.tensor([[1, 2, 0]])
        )
