"""The pooling heads of the frame-aligned classifier: valid frames (B, T, H) → utterance vector (B, H), frame vectors
(B, T, H) and frame weights α (B, T). Backbone-independent (every backbone's frames have `hidden_size` features).

Byun & Lee (2025): attentive pooling (stage 1), CLS self-attention pooling (stage 2), and the Table 3 baselines.
Part of the remote-code core (relative imports only).
"""

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Attention

from .configuration_frame_aligned import FrameAlignedConfigMixin


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to `mask`; exactly zero where `mask` is False. Computed and returned in
    fp32 whatever the dtype of `scores`: CUDA autocast promotes softmax to fp32, CPU autocast keeps bf16 (α then
    summed to 1 only within 1e-3 and FUAL, a KL against α, came out slightly negative); this makes both the same.

    scores: (batch_size, num_frames) float; mask: (batch_size, num_frames) bool → (batch_size, num_frames) float32.
    """
    scores = scores.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return scores.softmax(dim=-1) * mask


class FrameAlignedMeanPooling(nn.Module):
    """Average of the valid frames (uniform α)."""

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        weights = frame_mask.to(hidden_states.dtype)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
        return torch.einsum("bt,bth->bh", weights, hidden_states), hidden_states, weights


class FrameAlignedAttentivePooling(nn.Module):
    """Stage 1: s_t = wᵀh_t + b, α = softmax(s) over valid frames, u = Σ α_t h_t."""

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        weights = masked_softmax(self.score(hidden_states).squeeze(-1), frame_mask)
        return torch.einsum("bt,bth->bh", weights.to(hidden_states.dtype), hidden_states), hidden_states, weights


class FrameAlignedFeedForward(nn.Module):
    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        intermediate_size = config.pooling_intermediate_size or config.intermediate_size
        self.intermediate_dense = nn.Linear(config.hidden_size, intermediate_size)
        self.intermediate_act_fn = ACT2FN[config.hidden_act]
        self.output_dense = nn.Linear(intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.pooling_dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dropout(self.intermediate_act_fn(self.intermediate_dense(hidden_states)))
        return self.dropout(self.output_dense(hidden_states))


class FrameAlignedPoolingLayer(GradientCheckpointingLayer):
    """One post-norm transformer layer (as in wav2vec2-base; the same for every backbone) with the pooling's own head
    count and dropout.

    Its attention follows `config._attn_implementation` (eager, SDPA, flash) like the backbone's layers.
    """

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        self.attention = Wav2Vec2Attention(
            embed_dim=config.hidden_size,
            num_heads=config.pooling_num_heads,
            dropout=config.pooling_dropout,
            config=config,
        )
        self.dropout = nn.Dropout(config.pooling_dropout)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FrameAlignedFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        attn_residual = hidden_states
        hidden_states, _ = self.attention(hidden_states, attention_mask=attention_mask)
        hidden_states = self.layer_norm(attn_residual + self.dropout(hidden_states))
        hidden_states = self.final_layer_norm(hidden_states + self.feed_forward(hidden_states))
        return hidden_states


class FrameAlignedPoolingEncoder(nn.Module):
    """`pooling_num_layers` pooling layers with a key-padding mask built from the frame mask."""

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([FrameAlignedPoolingLayer(config) for _ in range(config.pooling_num_layers)])

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, S, H); frame_mask: (B, S) bool → (B, S, H)."""
        # allow_is_bidirectional_skip=False: the skip tests `frame_mask.all()`, a host sync in every step.
        attention_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=frame_mask,
            allow_is_bidirectional_skip=False,
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask=attention_mask)
        return hidden_states


class FrameAlignedSelfAttentionPooling(nn.Module):
    """Table 3 baseline: the pooling encoder over the frames (no CLS), then attentive pooling."""

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        self.encoder = FrameAlignedPoolingEncoder(config)
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        frames = self.encoder(hidden_states, frame_mask)
        weights = masked_softmax(self.score(frames).squeeze(-1), frame_mask)
        return torch.einsum("bt,bth->bh", weights.to(frames.dtype), frames), frames, weights


class FrameAlignedCLSAttentionPooling(nn.Module):
    """Stage 2: (c, f_1..f_T) = Enc(h_CLS, h_1..h_T); u = c; α = softmax over valid frames of c·f_t / √H."""

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(config.hidden_size))
        self.encoder = FrameAlignedPoolingEncoder(config)
        self.scale = config.hidden_size**-0.5

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        batch_size, _, hidden_size = hidden_states.shape
        cls = self.cls_token.to(hidden_states.dtype).expand(batch_size, 1, hidden_size)
        sequence = torch.cat([cls, hidden_states], dim=1)
        sequence_mask = torch.cat([frame_mask.new_ones(batch_size, 1), frame_mask], dim=1)
        encoded = self.encoder(sequence, sequence_mask)
        cls_output, frames = encoded[:, 0], encoded[:, 1:]
        scores = torch.einsum("bh,bth->bt", cls_output, frames) * self.scale
        return cls_output, frames, masked_softmax(scores, frame_mask)


POOLING_CLASSES = {
    "mean": FrameAlignedMeanPooling,
    "attentive": FrameAlignedAttentivePooling,
    "self_attention": FrameAlignedSelfAttentionPooling,
    "cls_attention": FrameAlignedCLSAttentionPooling,
}


__all__ = [
    "FrameAlignedAttentivePooling",
    "FrameAlignedCLSAttentionPooling",
    "FrameAlignedMeanPooling",
    "FrameAlignedPoolingEncoder",
    "FrameAlignedPoolingLayer",
    "FrameAlignedSelfAttentionPooling",
    "POOLING_CLASSES",
    "masked_softmax",
]
