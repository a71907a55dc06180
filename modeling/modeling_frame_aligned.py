"""Frame- and utterance-aligned pooling for speech emotion recognition on wav2vec 2.0, HuBERT, WavLM, data2vec-audio.

Byun & Lee (2025), "Frame and Utterance Emotional Alignment for Speech Emotion Recognition". Stage 1 trains the
backbone with attentive pooling; stage 2 replaces the pooling with a CLS self-attention encoder and adds the
EAL and FUAL losses (computed by `FrameAlignedTrainer` from the outputs of this model). One head
(`FrameAlignedModelMixin`) serves every backbone; the pooling modules live in `pooling_frame_aligned.py`.

Self-contained (relative imports only) so it can be uploaded to the Hub as remote code.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.models.data2vec.modeling_data2vec_audio import Data2VecAudioModel, Data2VecAudioPreTrainedModel
from transformers.models.hubert.modeling_hubert import HubertModel, HubertPreTrainedModel
from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2Model, Wav2Vec2PreTrainedModel
from transformers.models.wavlm.modeling_wavlm import WavLMModel, WavLMPreTrainedModel
from transformers.utils import ModelOutput, logging

from .configuration_frame_aligned import (
    Data2VecAudioFrameAlignedConfig,
    FrameAlignedConfigMixin,
    HubertFrameAlignedConfig,
    Wav2Vec2FrameAlignedConfig,
    WavLMFrameAlignedConfig,
)
from .frames import frame_geometry, frames_for_samples, samples_for_frames
from .loading_frame_aligned import FrameAlignedLoadingMixin
from .pooling_frame_aligned import POOLING_CLASSES, FrameAlignedCLSAttentionPooling


logger = logging.get_logger(__name__)


@dataclass
class FrameAlignedClassifierOutput(ModelOutput):
    """
    Output of every `*ForFrameAlignedClassification` model.

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
    if (
        not isinstance(hidden_states, torch.Tensor)
        or hidden_states.requires_grad
        or not hidden_states.is_floating_point()
    ):
        return None
    if not any(param.requires_grad for param in module.parameters()):
        return None
    return (hidden_states.detach().requires_grad_(True), *args[1:])


def adapter_parameter_ids(model: nn.Module) -> set[int]:
    """`id`s of the parameters a peft adapter added to `model`: in every tuner layer (a module with a `base_layer`
    and `active_adapters`, e.g. a LoRA `Linear`) those not in its base layer, and the trained copies of a
    `modules_to_save` wrapper. Duck-typed: the core does not import peft."""
    ids = set()
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if isinstance(base, nn.Module) and hasattr(module, "active_adapters"):
            base_ids = {id(parameter) for parameter in base.parameters()}
            ids |= {id(parameter) for parameter in module.parameters() if id(parameter) not in base_ids}
        copies = getattr(module, "modules_to_save", None)
        if isinstance(copies, nn.ModuleDict) and hasattr(module, "original_module"):
            ids |= {id(parameter) for parameter in copies.parameters()}
    return ids


class FrameAlignedModelMixin(FrameAlignedLoadingMixin):
    """The frame-aligned head, shared by every backbone: backbone → (weighted layer sum) → pooling
    (`config.pooling`) → linear classifier, exposing frame-level predictions and α.

    Mixed in before a backbone's `*PreTrainedModel` (which gives `base_model_prefix`, the attribute the backbone
    lives under: `wav2vec2`, `hubert`, `wavlm`, `data2vec_audio`, so plain pre-trained checkpoints load into it);
    `backbone_class` is that backbone's `*Model`. Used like the backbone's `*ForSequenceClassification`: loading a
    plain backbone checkpoint keeps the backbone and starts a new head; loading a checkpoint whose pooling differs
    from `config.pooling` (stage 1 → stage 2) keeps the backbone, starts a new pooling head and classifier, and
    records what it dropped in `dropped_checkpoint_keys`. A checkpoint whose backbone does not load completely is
    refused (`BackboneWeightsError`; see `loading_frame_aligned.py`). Open checkpoints with
    `AutoModelForFrameAlignedClassification` (`auto_frame_aligned.py`), which picks the class from `model_type`.
    """

    backbone_class: type[nn.Module]
    # forward() takes no loss kwargs: the Trainer must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False

    def __init__(self, config: FrameAlignedConfigMixin):
        super().__init__(config)
        config.check_head_fields()  # also fields set after the config was built (from_pretrained's kwargs)
        setattr(self, self.base_model_prefix, self.backbone_class(config))
        if config.use_weighted_layer_sum:  # transformer layers + the input embeddings
            self.layer_weights = nn.Parameter(torch.full((config.num_hidden_layers + 1,), 1.0))
        self.pooler = POOLING_CLASSES[config.pooling](config)
        self.dropout = nn.Dropout(config.final_dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        for module in self.modules():
            if isinstance(module, GradientCheckpointingLayer):
                module.register_forward_pre_hook(_checkpointed_input_requires_grad)
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, FrameAlignedCLSAttentionPooling):
            init.normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, FrameAlignedModelMixin) and getattr(module, "layer_weights", None) is not None:
            init.constant_(module.layer_weights, 1.0 / (self.config.num_hidden_layers + 1))  # as transformers' heads

    @classmethod
    def is_custom_code(cls) -> bool:
        # transformers treats any class defined outside its package as "custom code" and, in `initialize_weights`,
        # then skips every module without parameters of its own once its children are initialised (a shortcut for
        # remote code that writes weights in place). That skips e.g. wav2vec2's own init of `Wav2Vec2FeatureProjection`
        # and `Wav2Vec2PositionalConvEmbedding` (their weights live in child Linear/Conv1d modules; the same in HuBERT,
        # WavLM and data2vec-audio), so weights missing from a checkpoint came out differently initialised than in
        # `__init__`. Every init here goes through `transformers.initialization` (which respects already-loaded
        # weights): use the library's regular path.
        return False

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        # transformers guesses this from the module source (an `*Attention*(nn.Module)` class without
        # `ALL_ATTENTION_FUNCTIONS.get_interface(`), which misfires on our pooling class names. The pooling's attention
        # is `Wav2Vec2Attention`, which dispatches on `config._attn_implementation` at every call, and the backbone and
        # pooling layers share `self.config`, so `set_attn_implementation("eager" | "sdpa")` works (WavLM: eager only).
        return True

    def freeze_feature_encoder(self):
        """Stop gradients into the CNN feature encoder (also skips its backward pass entirely)."""
        self.base_model.feature_extractor._freeze_parameters()

    def freeze_for_training(self):
        """Turn `requires_grad` off as the config says: the CNN always, and with `num_trainable_layers = N` everything
        below the top N transformer layers (feature projection, positional convolution, lower layers). With
        `use_weighted_layer_sum` on a pre-norm encoder, its (unused) final layer norm is frozen too.

        It only ever turns `requires_grad` off, never on: what a caller froze stays frozen, and parameters a peft
        adapter added (a tuner layer's own weights beside its `base_layer`, `modules_to_save` copies) keep what the
        adapter set, wherever they sit. Call it after loading (`requires_grad` is not saved in checkpoints);
        `FrameAlignedTrainer` calls it on every path (a model passed in, `model_init`, peft, resume, compile).
        """
        adapter = adapter_parameter_ids(self)

        def freeze(module: nn.Module):
            for parameter in module.parameters():
                if id(parameter) not in adapter:
                    parameter.requires_grad_(False)

        feature_extractor = self.base_model.feature_extractor
        freeze(feature_extractor)
        if not any(id(parameter) in adapter for parameter in feature_extractor.parameters()):
            feature_extractor._requires_grad = False  # no backward pass through the CNN at all
        for module in self.frozen_backbone_modules():
            freeze(module)
        if self.num_frozen_layers > 0 and getattr(self.base_model, "masked_spec_embed", None) is not None:
            self.base_model.masked_spec_embed.requires_grad_(False)
        if self.config.use_weighted_layer_sum and self.config.do_stable_layer_norm:
            # The weighted sum reads the layers' outputs; a pre-norm encoder's final norm (applied only to
            # `last_hidden_state`) is then unused, as in transformers' heads: no trainable parameter without gradient.
            freeze(self.base_model.encoder.layer_norm)

    @property
    def num_frozen_layers(self) -> int:
        trainable = self.config.num_trainable_layers
        return 0 if trainable is None else self.config.num_hidden_layers - trainable

    def frozen_backbone_modules(self) -> list[nn.Module]:
        """Modules between the CNN and the first trainable transformer layer (empty when all layers train)."""
        if self.num_frozen_layers == 0:
            return []
        encoder = self.base_model.encoder
        modules = [self.base_model.feature_projection, encoder.pos_conv_embed]
        if not self.config.do_stable_layer_norm:  # post-norm encoders normalise before the first layer
            modules.append(encoder.layer_norm)
        return modules + list(encoder.layers[: self.num_frozen_layers])

    def frame_mask(
        self, num_frames: int, attention_mask: torch.Tensor | None, batch_size: int, device
    ) -> torch.Tensor:
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
        (the backbones raise on such batches); the added samples are masked out, so no frame of them is ever pooled."""
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
        weighted = self.config.use_weighted_layer_sum
        if weighted and self.training and getattr(self.config, "layerdrop", 0.0) > 0.0:
            # transformers ≥ 5 records a hidden state per layer that runs: a layer LayerDrop skips leaves none, so the
            # weights would meet fewer states than layers (a crash at a random step, or the wrong layers summed).
            raise ValueError(
                f"use_weighted_layer_sum=True needs every layer's hidden state, but layerdrop="
                f"{self.config.layerdrop} skips random layers in training; set config.layerdrop = 0.0 (train.py: "
                "model.config_overrides: {layerdrop: 0.0})"
            )
        if weighted:
            return_hidden_states = backbone_kwargs.get("output_hidden_states", self.config.output_hidden_states)
            backbone_kwargs["output_hidden_states"] = True

        input_values, attention_mask = self._pad_to_one_frame(input_values, attention_mask)
        input_values, attention_mask = self._pad_for_spec_augment(input_values, attention_mask)
        outputs = self.base_model(
            input_values,
            attention_mask=attention_mask if self.config.use_backbone_attention_mask else None,
            return_dict=True,
            **backbone_kwargs,
        )
        hidden_states = self.weighted_layer_sum(outputs.hidden_states) if weighted else outputs.last_hidden_state
        frame_mask = self.frame_mask(
            hidden_states.shape[1], attention_mask, hidden_states.shape[0], hidden_states.device
        )
        output = self.classify_frames(hidden_states, frame_mask, labels)
        for name in ("hidden_states", "attentions"):  # the backbone's, when asked for
            if getattr(outputs, name) is not None and (
                name != "hidden_states" or not weighted or return_hidden_states
            ):
                output[name] = getattr(outputs, name)
        return output if return_dict else output.to_tuple()

    def weighted_layer_sum(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Σ_l softmax(w)_l · h_l over the backbone's `num_hidden_layers + 1` hidden states (the SUPERB protocol, as in
        transformers' `*ForSequenceClassification` with `use_weighted_layer_sum=True`).

        hidden_states: num_hidden_layers + 1 tensors (B, T, H) (`output_hidden_states=True`) → (B, T, H).

        Raises:
            ValueError: when the count of hidden states is not the count of weights.
        """
        if len(hidden_states) != self.layer_weights.shape[0]:
            raise ValueError(
                f"the weighted layer sum has {self.layer_weights.shape[0]} weights (num_hidden_layers + 1) but got "
                f"{len(hidden_states)} hidden states"
            )
        stacked = torch.stack(hidden_states, dim=1)
        weights = nn.functional.softmax(self.layer_weights, dim=-1)
        return (stacked * weights.view(-1, 1, 1)).sum(dim=1)

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


class Wav2Vec2ForFrameAlignedClassification(FrameAlignedModelMixin, Wav2Vec2PreTrainedModel):
    """wav2vec 2.0 with the frame-aligned head (see [`FrameAlignedModelMixin`]); the paper's model."""

    config_class = Wav2Vec2FrameAlignedConfig
    config: Wav2Vec2FrameAlignedConfig
    backbone_class = Wav2Vec2Model


class HubertForFrameAlignedClassification(FrameAlignedModelMixin, HubertPreTrainedModel):
    """HuBERT with the frame-aligned head (see [`FrameAlignedModelMixin`]).

    hubert-base (`facebook/hubert-base-ls960`) has a group-norm CNN and gets no attention mask; hubert-large has layer
    norms and a pre-norm encoder, and gets the mask (see `backbone_attention_mask`).
    """

    config_class = HubertFrameAlignedConfig
    config: HubertFrameAlignedConfig
    backbone_class = HubertModel


class WavLMForFrameAlignedClassification(FrameAlignedModelMixin, WavLMPreTrainedModel):
    """WavLM with the frame-aligned head (see [`FrameAlignedModelMixin`]).

    WavLM's backbone runs eager attention only (its gated relative position bias has no SDPA path); the pooling
    follows. The frozen-prefix cache does not support it (its layers share the bias computed in layer 0).
    """

    _supports_sdpa = False

    def _activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, *args, **kwargs):
        """Refuse `use_reentrant=True`: WavLM's layers pass the relative position bias on as a keyword argument, which
        reentrant checkpointing does not detach, and the backward pass then re-enters every earlier layer's checkpoint
        without end (transformers' own `WavLMForSequenceClassification` hangs the same way). The default
        (`use_reentrant=False`) works."""
        if (activation_checkpointing_kwargs or {}).get("use_reentrant"):
            raise ValueError(
                f"{type(self).__name__}: activation checkpointing with use_reentrant=True never finishes its backward "
                "pass on WavLM (the position bias passed between checkpointed layers); use use_reentrant=False."
            )
        return super()._activation_checkpointing_enable(activation_checkpointing_kwargs, *args, **kwargs)

    config_class = WavLMFrameAlignedConfig
    config: WavLMFrameAlignedConfig
    backbone_class = WavLMModel


class Data2VecAudioForFrameAlignedClassification(FrameAlignedModelMixin, Data2VecAudioPreTrainedModel):
    """data2vec-audio with the frame-aligned head (see [`FrameAlignedModelMixin`]): layer-normalised CNN, post-norm
    encoder, always given the attention mask."""

    config_class = Data2VecAudioFrameAlignedConfig
    config: Data2VecAudioFrameAlignedConfig
    backbone_class = Data2VecAudioModel


# The frame-aligned model class of each wav2vec 2.0-family config's `model_type` (Whisper's is in
# `modeling_whisper_frame_aligned.py`; all of them: `auto_frame_aligned.FRAME_ALIGNED_MODELS`).
SSL_FRAME_ALIGNED_MODELS = {
    model_class.config_class.model_type: model_class
    for model_class in (
        Wav2Vec2ForFrameAlignedClassification,
        HubertForFrameAlignedClassification,
        WavLMForFrameAlignedClassification,
        Data2VecAudioForFrameAlignedClassification,
    )
}


__all__ = [
    "adapter_parameter_ids",
    "Data2VecAudioForFrameAlignedClassification",
    "SSL_FRAME_ALIGNED_MODELS",
    "FrameAlignedClassifierOutput",
    "FrameAlignedModelMixin",
    "HubertForFrameAlignedClassification",
    "Wav2Vec2ForFrameAlignedClassification",
    "WavLMForFrameAlignedClassification",
]
