"""The auxiliary losses of stage 2 (docs/method.md): pure functions on model outputs.

Every reduction runs over valid frames only (`frame_mask`); each returns the mean over the batch.
"""

import torch
import torch.nn.functional as F


def _bool_mask(frame_mask: torch.Tensor, name: str = "frame_mask") -> torch.Tensor:
    """A (B, T) mask as bool: bool, or 0/1 integers (the transformers convention for masks), or 0./1. floats."""
    if frame_mask.dtype == torch.bool:
        return frame_mask
    if frame_mask.numel() and not ((frame_mask == 0) | (frame_mask == 1)).all():
        raise ValueError(f"{name} must be bool or hold only 0 and 1, got values {frame_mask.unique().tolist()[:5]}.")
    return frame_mask != 0


def emotional_attention_loss(
    utterance_embedding: torch.Tensor,
    frame_embeddings: torch.Tensor,
    frame_mask: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """EAL: l_t = softplus(m − cos(c, f_t)), averaged over the valid frames of each utterance, then the batch.

    Args:
        utterance_embedding: (B, H) the CLS output c.
        frame_embeddings: (B, T, H) the frame outputs f_t.
        frame_mask: (B, T) bool or 0/1 integer, True/1 for valid frames.
        margin: m.
    Returns:
        () scalar.
    Raises:
        ValueError: a mask with values other than 0 and 1.
    """
    similarity = F.cosine_similarity(utterance_embedding.unsqueeze(1), frame_embeddings, dim=-1)  # (B, T)
    frame_losses = F.softplus(margin - similarity)
    mask = _bool_mask(frame_mask).to(frame_losses.dtype)
    per_utterance = (frame_losses * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
    return per_utterance.mean()


def frame_utterance_alignment_loss(
    logits: torch.Tensor,
    frame_logits: torch.Tensor,
    frame_weights: torch.Tensor,
    frame_mask: torch.Tensor,
    detach_target: bool = False,
) -> torch.Tensor:
    """FUAL: KL(q ‖ p̄) with q = softmax(logits) and p̄ = Σ_t α_t softmax(frame_logits_t), mean over the batch.

    log p̄ is a log-sum-exp of log α_t + log p_t, so small frame probabilities never underflow.

    Args:
        logits: (B, C) utterance logits.
        frame_logits: (B, T, C) the classifier applied to each frame.
        frame_weights: (B, T) α, summing to 1 over the valid frames.
        frame_mask: (B, T) bool or 0/1 integer, True/1 for valid frames.
        detach_target: stop the gradient through q.
    Returns:
        () scalar.
    """
    log_q = logits.log_softmax(dim=-1)
    if detach_target:
        log_q = log_q.detach()
    # clamp: an α that underflowed to 0 contributes nothing, without a NaN gradient from log(0)
    log_alpha = frame_weights.clamp_min(torch.finfo(frame_weights.dtype).tiny).log()
    log_alpha = log_alpha.masked_fill(~_bool_mask(frame_mask), float("-inf"))
    log_p_bar = torch.logsumexp(log_alpha.unsqueeze(-1) + frame_logits.log_softmax(dim=-1), dim=1)  # (B, C)
    return F.kl_div(log_p_bar, log_q, log_target=True, reduction="batchmean")


# ---------------------------------------------------------------------------------------------------------------
# The utterance loss: cross-entropy, optionally class-weighted, focal, and/or against a label distribution.
# (docs/imbalance_and_soft_labels.md; EAL and FUAL above are not affected by any of these options.)
# ---------------------------------------------------------------------------------------------------------------

CLASS_WEIGHTINGS = ("inverse", "inverse_sqrt")


def class_weights_from_counts(counts, scheme: str = "inverse") -> torch.Tensor:
    """Per-class weights from the training split's class counts n_c (N = Σ n_c, C classes).

    - `inverse`: w_c ∝ 1 / n_c; `inverse_sqrt`: w_c ∝ 1 / √n_c.
    - Normalisation: Σ_c (n_c / N) · w_c = 1, i.e. the average weight of a training example is 1, so a weighted loss
      keeps the scale of plain cross-entropy (and the learning rates that go with it). For `inverse` this is
      w_c = N / (C · n_c), scikit-learn's `compute_class_weight("balanced")`.

    Args:
        counts: (C,) number of training examples of each class, in label-id order.
        scheme: `inverse` or `inverse_sqrt`.
    Returns:
        (C,) float32 weights.
    Raises:
        ValueError: an unknown scheme, or a class without training examples (its weight would be infinite).
    """
    if scheme not in CLASS_WEIGHTINGS:
        raise ValueError(f"class weighting must be one of {list(CLASS_WEIGHTINGS)}, got {scheme!r}.")
    counts = torch.as_tensor(counts, dtype=torch.float64)
    empty = [index for index, count in enumerate(counts.tolist()) if count <= 0]
    if empty:
        raise ValueError(
            f"class weighting {scheme!r} needs every class in the training split; classes {empty} (label ids) have "
            f"no examples (counts {[int(c) for c in counts.tolist()]})."
        )
    raw = counts.pow(-1.0 if scheme == "inverse" else -0.5)
    return (raw * counts.sum() / (counts * raw).sum()).float()


def utterance_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    target_distribution: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    focal_gamma: float = 0.0,
) -> torch.Tensor:
    """The utterance loss: (1/B) Σ_i Σ_c −w_c · y_ic · (1 − p_ic)^γ · log p_ic, with p_i = softmax(logits_i).

    - y_i: the one-hot of `labels[i]`, or `target_distribution[i]` (soft targets: annotator-vote distributions).
    - w_c: `class_weights` (1 when None); γ: `focal_gamma` (focal loss, Lin et al. 2017, "Focal Loss for Dense
      Object Detection", Eq. 5: FL(p_t) = −α_t (1 − p_t)^γ log p_t, here with α_t = w_t and summed over soft
      targets). With none of the options it is exactly `F.cross_entropy(logits, labels)` (the model's own loss);
      γ = 0 is exactly (weighted / soft) cross-entropy.
    - Reduction: the plain mean over the batch. `F.cross_entropy(weight=w)` instead divides by Σ_i w_{y_i} of the
      batch, which undoes part of the weighting batch by batch; with weights normalised as in
      `class_weights_from_counts` the plain mean keeps the scale of unweighted CE.

    Args:
        logits: (B, C) utterance logits.
        labels: (B,) int label ids (used when `target_distribution` is None).
        target_distribution: (B, C) rows summing to 1.
        class_weights: (C,) weights.
        focal_gamma: γ >= 0.
    Returns:
        () scalar.
    Raises:
        ValueError: γ < 0, neither labels nor a distribution, or shapes that do not match the logits.
    """
    if focal_gamma < 0:
        raise ValueError(f"focal_gamma must be >= 0 (0 = cross-entropy), got {focal_gamma}.")
    num_classes = logits.shape[-1]
    if target_distribution is None:
        if labels is None:
            raise ValueError("utterance_loss needs labels or a target_distribution.")
        if focal_gamma == 0 and class_weights is None:
            return F.cross_entropy(logits, labels)
        target_distribution = F.one_hot(labels.long(), num_classes).to(logits.dtype)
    if target_distribution.shape != logits.shape:
        raise ValueError(
            f"target_distribution has shape {tuple(target_distribution.shape)}, the logits {tuple(logits.shape)}: "
            f"one probability per class ({num_classes}) per utterance expected."
        )
    log_p = logits.log_softmax(dim=-1)
    per_class = -target_distribution.to(log_p.dtype) * log_p  # (B, C)
    if focal_gamma != 0:
        per_class = per_class * (1 - log_p.exp()).clamp_min(0).pow(focal_gamma)
    if class_weights is not None:
        if class_weights.shape != (num_classes,):
            raise ValueError(f"class_weights has shape {tuple(class_weights.shape)}, expected ({num_classes},).")
        per_class = per_class * class_weights.to(per_class)
    return per_class.sum(dim=-1).mean()
