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
