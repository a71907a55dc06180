"""wav2vec 2.0 with frame- and utterance-aligned pooling for speech emotion recognition.

Byun & Lee (2025), "Frame and Utterance Emotional Alignment for Speech Emotion Recognition". Stage 1 trains the
backbone with attentive pooling; stage 2 replaces the pooling with a CLS self-attention encoder and adds the
EAL and FUAL losses (computed by `FrameAlignedTrainer` from the outputs of this model).

Self-contained (relative imports only) so it can be uploaded to the Hub as remote code.
"""

from dataclasses import dataclass

import torch
from torch import nn

from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.wav2vec2.modeling_wav2vec2 import (
    Wav2Vec2Attention,
    Wav2Vec2Model,
    Wav2Vec2PreTrainedModel,
)
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput, logging

from .configuration_frame_aligned import Wav2Vec2FrameAlignedConfig
from .frames import frame_geometry, frames_for_samples, samples_for_frames


logger = logging.get_logger(__name__)


@dataclass
class FrameAlignedClassifierOutput(ModelOutput):
    """
    Output of [`Wav2Vec2ForFrameAlignedClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Cross-entropy of the utterance logits. The auxiliary EAL/FUAL terms are added by `FrameAlignedTrainer`.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
            Utterance-level classification scores (before softmax).
        frame_logits (`torch.FloatTensor` of shape `(batch_size, num_frames, num_labels)`):
            The same classifier applied to every frame embedding. Padded frames hold meaningless values.
        frame_weights (`torch.FloatTensor` of shape `(batch_size, num_frames)`):
            α: how much each frame contributes to the utterance, zero on padding, summing to 1 over valid frames.
        utterance_embedding (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The pooled vector fed to the classifier (the CLS output for `cls_attention`).
        frame_embeddings (`torch.FloatTensor` of shape `(batch_size, num_frames, hidden_size)`):
            Frame vectors after the pooling encoder (the backbone frames for `mean`/`attentive`).
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`):
            `True` for frames computed from real samples, `False` for padding.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states=True`):
            Backbone hidden states, one per layer plus the input embeddings.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            Backbone self-attention weights, one per layer.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    frame_logits: torch.FloatTensor | None = None
    frame_weights: torch.FloatTensor | None = None
    utterance_embedding: torch.FloatTensor | None = None
    frame_embeddings: torch.FloatTensor | None = None
    frame_mask: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to `mask`; exactly zero where `mask` is False.

    scores: (batch_size, num_frames) float; mask: (batch_size, num_frames) bool → (batch_size, num_frames).
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1) * mask


class FrameAlignedMeanPooling(nn.Module):
    """Average of the valid frames (uniform α)."""

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
        super().__init__()

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        weights = frame_mask.to(hidden_states.dtype)
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
        return torch.einsum("bt,bth->bh", weights, hidden_states), hidden_states, weights


class FrameAlignedAttentivePooling(nn.Module):
    """Stage 1: s_t = wᵀh_t + b, α = softmax(s) over valid frames, u = Σ α_t h_t."""

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
        super().__init__()
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        weights = masked_softmax(self.score(hidden_states).squeeze(-1), frame_mask)
        return torch.einsum("bt,bth->bh", weights, hidden_states), hidden_states, weights


class FrameAlignedFeedForward(nn.Module):
    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
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
    """One post-norm transformer layer (as in wav2vec2-base) with the pooling's own head count and dropout.

    Its attention follows `config._attn_implementation` (eager, SDPA, flash) like the backbone's layers.
    """

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
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

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([FrameAlignedPoolingLayer(config) for _ in range(config.pooling_num_layers)])

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, S, H); frame_mask: (B, S) bool → (B, S, H)."""
        attention_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=frame_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask=attention_mask)
        return hidden_states


class FrameAlignedSelfAttentionPooling(nn.Module):
    """Table 3 baseline: the pooling encoder over the frames (no CLS), then attentive pooling."""

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
        super().__init__()
        self.encoder = FrameAlignedPoolingEncoder(config)
        self.score = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor):
        """hidden_states: (B, T, H); frame_mask: (B, T) → utterance (B, H), frames (B, T, H), α (B, T)."""
        frames = self.encoder(hidden_states, frame_mask)
        weights = masked_softmax(self.score(frames).squeeze(-1), frame_mask)
        return torch.einsum("bt,bth->bh", weights, frames), frames, weights


class FrameAlignedCLSAttentionPooling(nn.Module):
    """Stage 2: (c, f_1..f_T) = Enc(h_CLS, h_1..h_T); u = c; α = softmax over valid frames of c·f_t / √H."""

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
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


def _checkpointed_input_requires_grad(module: GradientCheckpointingLayer, args: tuple):
    """Forward pre-hook: under gradient checkpointing, make a trainable layer's input hidden states require grad.

    With `use_reentrant=True`, a checkpointed layer whose input does not require grad returns an output that does not
    either, so its own trainable weights get no gradient: the first trainable transformer layer above frozen ones
    (`num_trainable_layers`), or the pooling encoder over a frozen backbone, would silently stop training. wav2vec2's
    feature encoder does the same for its own input. Runs outside the checkpoint (transformers checkpoints `forward`).
    """
    if not (module.gradient_checkpointing and module.training and torch.is_grad_enabled()) or not args:
        return None
    hidden_states = args[0]
    if not isinstance(hidden_states, torch.Tensor) or hidden_states.requires_grad or not hidden_states.is_floating_point():
        return None
    if not any(param.requires_grad for param in module.parameters()):
        return None
    return (hidden_states.detach().requires_grad_(True), *args[1:])


POOLING_CLASSES = {
    "mean": FrameAlignedMeanPooling,
    "attentive": FrameAlignedAttentivePooling,
    "self_attention": FrameAlignedSelfAttentionPooling,
    "cls_attention": FrameAlignedCLSAttentionPooling,
}


class Wav2Vec2ForFrameAlignedClassification(Wav2Vec2PreTrainedModel):
    """wav2vec 2.0 → pooling (`config.pooling`) → linear classifier, exposing frame-level predictions and α.

    Used like `Wav2Vec2ForSequenceClassification`. Loading a checkpoint whose pooling differs from
    `config.pooling` (stage 1 → stage 2) keeps the backbone, starts a new pooling head and classifier, and
    records what it dropped in `dropped_checkpoint_keys`.
    """

    config_class = Wav2Vec2FrameAlignedConfig
    config: Wav2Vec2FrameAlignedConfig
    # forward() takes no loss kwargs: the Trainer must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: Wav2Vec2FrameAlignedConfig):
        super().__init__(config)
        if getattr(config, "add_adapter", False):
            raise ValueError("Frame-aligned classification does not support wav2vec2 adapters (add_adapter=True).")
        self.wav2vec2 = Wav2Vec2Model(config)
        self.pooler = POOLING_CLASSES[config.pooling](config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.dropped_checkpoint_keys: list[str] = []
        for module in self.modules():
            if isinstance(module, GradientCheckpointingLayer):
                module.register_forward_pre_hook(_checkpointed_input_requires_grad)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, FrameAlignedCLSAttentionPooling):
            init.normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)

    @classmethod
    def is_custom_code(cls) -> bool:
        # transformers treats any class defined outside its package as "custom code" and, in `initialize_weights`,
        # then skips every module without parameters of its own once its children are initialised (a shortcut for
        # remote code that writes weights in place). That skips wav2vec2's own init of `Wav2Vec2FeatureProjection` and
        # `Wav2Vec2PositionalConvEmbedding` (their weights live in child Linear/Conv1d modules), so weights missing
        # from a checkpoint came out differently initialised than in `__init__`. Every init here goes through
        # `transformers.initialization` (which respects already-loaded weights): use the library's regular path.
        return False

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        # transformers guesses this from the module source (an `*Attention*(nn.Module)` class without
        # `ALL_ATTENTION_FUNCTIONS.get_interface(`), which misfires on our pooling class names. All attention here is
        # `Wav2Vec2Attention`, which dispatches on `config._attn_implementation` at every call, and the backbone and
        # pooling layers share `self.config`, so `set_attn_implementation("eager" | "sdpa")` works.
        return True

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, loading_info = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        model._start_new_head_if_pooling_changed(loading_info)
        return (model, loading_info) if output_loading_info else model

    def _start_new_head_if_pooling_changed(self, loading_info: dict):
        """A classifier trained on another pooling's output is meaningless: re-initialise it with the pooler."""
        missing = list(loading_info.get("missing_keys", []))
        unexpected = list(loading_info.get("unexpected_keys", []))
        if not any(key.startswith("pooler.") for key in missing + unexpected):
            return
        dropped = sorted(key for key in unexpected if key.startswith("pooler."))
        if not any(key.startswith("classifier.") for key in missing):
            with torch.no_grad():
                self.classifier.weight.normal_(mean=0.0, std=self.config.initializer_range)
                self.classifier.bias.zero_()
            dropped += sorted(name for name, _ in self.classifier.named_parameters(prefix="classifier"))
        self.dropped_checkpoint_keys = dropped
        logger.warning(
            f"Started a new `{self.config.pooling}` pooling head and classifier; the backbone was loaded from the "
            f"checkpoint. Checkpoint weights not used: {dropped or 'none'}."
        )

    def freeze_feature_encoder(self):
        """Stop gradients into the CNN feature encoder (also skips its backward pass entirely)."""
        self.wav2vec2.feature_extractor._freeze_parameters()

    def freeze_for_training(self):
        """Set `requires_grad` as the config says: CNN frozen, and with `num_trainable_layers = N`, everything
        below the top N transformer layers (feature projection, positional convolution, lower layers) frozen.

        Call it after loading: `requires_grad` is not saved in checkpoints. `FrameAlignedTrainer` calls it.
        """
        self.requires_grad_(True)
        self.freeze_feature_encoder()
        for module in self.frozen_backbone_modules():
            module.requires_grad_(False)
        if self.num_frozen_layers > 0 and getattr(self.wav2vec2, "masked_spec_embed", None) is not None:
            self.wav2vec2.masked_spec_embed.requires_grad_(False)

    @property
    def num_frozen_layers(self) -> int:
        trainable = self.config.num_trainable_layers
        return 0 if trainable is None else self.config.num_hidden_layers - trainable

    def frozen_backbone_modules(self) -> list[nn.Module]:
        """Modules between the CNN and the first trainable transformer layer (empty when all layers train)."""
        if self.num_frozen_layers == 0:
            return []
        encoder = self.wav2vec2.encoder
        modules = [self.wav2vec2.feature_projection, encoder.pos_conv_embed]
        if not self.config.do_stable_layer_norm:  # post-norm encoders normalise before the first layer
            modules.append(encoder.layer_norm)
        return modules + list(encoder.layers[: self.num_frozen_layers])

    def frame_mask(self, num_frames: int, attention_mask: torch.Tensor | None, batch_size: int, device) -> torch.Tensor:
        """(B, T) bool mask of frames computed from real samples, from the sample-level `attention_mask`."""
        if attention_mask is None:
            return torch.ones(batch_size, num_frames, dtype=torch.bool, device=device)
        valid = frames_for_samples(attention_mask.sum(-1).long(), *frame_geometry(self.config))
        return torch.arange(num_frames, device=device) < valid.to(device)[:, None]

    def _pad_to_one_frame(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """Zero-pad clips shorter than the conv stack's receptive field (e.g. 80 samples, 5 ms) to one frame, as
        `modeling.audio.load_audio` does, so every entry point (pipeline, Trainer, user code) gets a prediction
        instead of a convolution error. The (right-padded) mask marks each clip's first `receptive_field` samples
        real, so a short clip in a longer batch has its one frame too; later padding stays masked. No branch on
        values (no host sync; traceable). Raises `ValueError` for an input with no samples."""
        if input_values.shape[-1] == 0:
            raise ValueError(f"input_values of shape {tuple(input_values.shape)} has no samples; expected a waveform.")
        receptive_field = frame_geometry(self.config).receptive_field
        padding = max(receptive_field - input_values.shape[-1], 0)
        if padding:
            input_values = nn.functional.pad(input_values, (0, padding))
        if attention_mask is not None:
            attention_mask = nn.functional.pad(attention_mask, (0, padding)).clone()
            attention_mask[:, :receptive_field] = 1
        return input_values, attention_mask

    def _pad_for_spec_augment(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """In training, zero-pad a batch whose clips all yield fewer frames than SpecAugment's `mask_time_length`
        (wav2vec2 raises on such batches); the added samples are masked out, so no frame of them is ever pooled."""
        config = self.config
        if not (self.training and config.mask_time_prob > 0 and getattr(config, "apply_spec_augment", True)):
            return input_values, attention_mask
        geometry = frame_geometry(config)
        if frames_for_samples(input_values.shape[-1], *geometry) >= config.mask_time_length:
            return input_values, attention_mask
        needed = samples_for_frames(config.mask_time_length, *geometry)
        if attention_mask is None:
            attention_mask = torch.ones(input_values.shape, dtype=torch.long, device=input_values.device)
        padding = needed - input_values.shape[-1]
        return nn.functional.pad(input_values, (0, padding)), nn.functional.pad(attention_mask, (0, padding))

    def forward(
        self,
        input_values: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> tuple | FrameAlignedClassifierOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_samples)`):
            16 kHz waveforms, zero-padded to the longest one in the batch.
        attention_mask (`torch.LongTensor` of shape `(batch_size, num_samples)`, *optional*):
            1 for real samples, 0 for padding. Always pass it for padded batches: the frame mask is computed from
            it even when the backbone does not receive it (`config.use_backbone_attention_mask`).
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Utterance labels in `[0, num_labels)`; the output `loss` is their cross-entropy.
        """
        return_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        backbone_kwargs = {}
        if output_attentions is not None:
            backbone_kwargs["output_attentions"] = output_attentions
        if output_hidden_states is not None:
            backbone_kwargs["output_hidden_states"] = output_hidden_states

        input_values, attention_mask = self._pad_to_one_frame(input_values, attention_mask)
        input_values, attention_mask = self._pad_for_spec_augment(input_values, attention_mask)
        outputs = self.wav2vec2(
            input_values,
            attention_mask=attention_mask if self.config.use_backbone_attention_mask else None,
            return_dict=True,
            **backbone_kwargs,
        )
        hidden_states = outputs.last_hidden_state
        frame_mask = self.frame_mask(hidden_states.shape[1], attention_mask, hidden_states.shape[0], hidden_states.device)
        output = self.classify_frames(hidden_states, frame_mask, labels)
        for name in ("hidden_states", "attentions"):  # the backbone's, when asked for
            if getattr(outputs, name) is not None:
                output[name] = getattr(outputs, name)
        return output if return_dict else output.to_tuple()

    def classify_frames(
        self, hidden_states: torch.Tensor, frame_mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> FrameAlignedClassifierOutput:
        """The head: pooling → dropout → classifier, on the utterance and on every frame; CE when `labels` is given.

        hidden_states: (B, T, H) backbone output; frame_mask: (B, T) bool; labels: (B,) → output without the
        backbone's `hidden_states`/`attentions` (also used to train from cached backbone outputs).
        """
        utterance_embedding, frame_embeddings, frame_weights = self.pooler(hidden_states, frame_mask)
        logits = self.classifier(self.dropout(utterance_embedding))
        frame_logits = self.classifier(self.dropout(frame_embeddings))

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.config.num_labels), labels.view(-1))

        return FrameAlignedClassifierOutput(
            loss=loss,
            logits=logits,
            frame_logits=frame_logits,
            frame_weights=frame_weights,
            utterance_embedding=utterance_embedding,
            frame_embeddings=frame_embeddings,
            frame_mask=frame_mask,
        )


__all__ = ["Wav2Vec2ForFrameAlignedClassification", "FrameAlignedClassifierOutput"]
