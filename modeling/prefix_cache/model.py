"""Stage 2 from a cache of the frozen prefix: the cut, and the model that trains from the cached output.

In stage 2 the CNN feature encoder, the feature projection, the positional convolution and the lower
`num_hidden_layers - num_trainable_layers` transformer layers are frozen. Their output for a clip never changes
during training, so it is computed once (`build_prefix_cache`) and stage 2 trains the top layers, the pooling head
and the classifier from it (`FrozenPrefixModel`). For wav2vec2-base on 3 s clips that is about half of the FLOPs of
a stage-2 step (see `benchmarks/frozen_prefix.py`). Three modules: the cut (`frozen_prefix_forward`,
`FrozenPrefixModel`) here, the cache in `prefix_cache.py`, training from it in `prefix_trainer.py`.

Where the cut is (the prefix ends with the hidden states that enter the first trainable layer):

- post-norm encoders (`do_stable_layer_norm=False`, wav2vec2-base): feature encoder → feature projection →
  (SpecAugment) → zero the padded frames when the backbone gets a mask → + positional conv → encoder `layer_norm`
  → dropout → layers[:N]. The encoder `layer_norm` runs *before* layer 0, so it is part of the prefix.
- pre-norm / stable-layer-norm encoders (wav2vec2-large-lv60 style): the same, without the norm before the layers;
  their final encoder `layer_norm` runs after the last layer and belongs to the trainable part.

What the cache changes (documented trade-offs; all are exact no-ops when the frozen part runs deterministically):

- The prefix is computed in eval mode: dropout inside the frozen part (`feat_proj_dropout`, `hidden_dropout`,
  `attention_dropout`, `activation_dropout` of the lower layers), LayerDrop of the lower layers and SpecAugment
  (`mask_time_prob`/`mask_feature_prob`: `masked_spec_embed` is applied right after the feature projection, inside
  the prefix) are OFF with the cache, while uncached stage-2 training applies them. Note that `Wav2Vec2Config`
  defaults to `mask_time_prob=0.05`. Dropout and LayerDrop of the trainable top layers and the head stay on.
  `disable_frozen_prefix_regularization` turns the same things off in an uncached model, for an exact comparison.
- A random crop in the collator (`random_crop=True`) is drawn once, at cache time; build the cache with a
  deterministic collator.
- Padding. A `feat_extract_norm="group"` backbone (wav2vec2-base) normalises its first conv layer over the whole
  padded sequence and, pre-trained without attention masks, attends over padded frames: a clip's prefix output
  depends on the batch it is padded in. For those backbones the cache keeps each batch (rows padded to the batch's
  longest clip, padded frames included) and `FrozenPrefixTrainer` replays exactly these batches every epoch, in a
  new order; with length-sorted batches (the default) padding is < 2 % anyway. `feat_extract_norm="layer"`
  backbones that receive the attention mask are padding-independent: rows are trimmed to their valid frames and
  any sampler may batch them.

Usage (what `train.py` does with `stage2.cache_frozen_prefix: true`, see `stage.cached_stage_trainer`):

```python
from modeling.prefix_cache.cache import FrozenPrefixCollator, build_prefix_cache
from modeling.prefix_cache.model import FrozenPrefixModel
from modeling.prefix_cache.trainer import FrozenPrefixTrainer

model.freeze_for_training()
train_cache = build_prefix_cache(model, train_dataset, collator, batch_size=32, dtype=torch.float16)
eval_cache = build_prefix_cache(model, eval_dataset, collator, batch_size=32, dtype=torch.float16)
trainer = FrozenPrefixTrainer(
    model=FrozenPrefixModel(model), args=args, train_dataset=train_cache, eval_dataset=eval_cache,
    data_collator=FrozenPrefixCollator(),
)
trainer.train()
model.save_pretrained(output_dir)  # FrozenPrefixModel's parameters ARE the model's modules
```
"""

import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from ..modeling_frame_aligned import FrameAlignedClassifierOutput, FrameAlignedModelMixin


# Backbones whose encoder layers the cut can split: WavLM's layers pass a relative position bias from layer 0 to the
# others (and draw LayerDrop differently), which the cached part would have to recompute: not supported.
PREFIX_CACHE_BACKBONES = ("wav2vec2", "hubert", "data2vec_audio")
UNSUPPORTED_REASONS = {
    "wavlm": "its layers share a relative position bias computed in layer 0",
    # Whisper ("model"): the cut below is written for the wav2vec 2.0 family's stem (CNN → feature projection →
    # positional convolution); Whisper's (log-mel → conv1/conv2 → sinusoidal positions) has no cut here yet.
    "model": "Whisper's log-mel and conv stem has no cut in prefix_cache/model.py yet",
}


def prefix_cache_problem(model_class: type[FrameAlignedModelMixin], config) -> str | None:
    """Why the frozen-prefix cache cannot reproduce the forward pass of `model_class(config)`, or None.

    Not supported: `use_weighted_layer_sum=True` (the sum reads every layer's output, the cache keeps only the input of
    the first trainable layer: the frozen layers' outputs would have to be cached too, N+1 times the memory), and
    WavLM backbones (see `PREFIX_CACHE_BACKBONES`). Train those without the cache (`stage2.cache_frozen_prefix:
    false`).
    """
    name = model_class.__name__
    if config.use_weighted_layer_sum:
        return (
            f"{name}: the frozen-prefix cache does not support use_weighted_layer_sum=True (the weighted sum needs "
            "every layer's output; the cache keeps only the input of the first trainable layer). Set "
            "stage2.cache_frozen_prefix: false."
        )
    if model_class.base_model_prefix not in PREFIX_CACHE_BACKBONES:
        reason = UNSUPPORTED_REASONS.get(model_class.base_model_prefix, "not implemented for it")
        return (
            f"{name}: the frozen-prefix cache supports the {PREFIX_CACHE_BACKBONES} backbones, not "
            f"{model_class.base_model_prefix!r} ({reason}). Set stage2.cache_frozen_prefix: false."
        )
    return None


def check_prefix_cache_supported(model: FrameAlignedModelMixin) -> None:
    """Raise `ValueError` when the frozen-prefix cache cannot run this model (see `prefix_cache_problem`)."""
    problem = prefix_cache_problem(type(model), model.config)
    if problem:
        raise ValueError(problem)


def num_frozen_layers_of(model: FrameAlignedModelMixin) -> int:
    """N, the number of frozen transformer layers; the prefix needs N >= 1 (and a supported model, see
    `check_prefix_cache_supported`)."""
    check_prefix_cache_supported(model)
    n = model.num_frozen_layers
    if n < 1:
        raise ValueError(
            "The frozen-prefix cache needs frozen transformer layers (config.num_trainable_layers < "
            f"num_hidden_layers); got num_trainable_layers={model.config.num_trainable_layers}."
        )
    return n


def is_padding_independent(config) -> bool:
    """Whether a clip's prefix output is the same in any padded batch.

    True for `feat_extract_norm="layer"` backbones that receive the attention mask (per-frame conv norms, padded
    frames zeroed and masked). False for `"group"` backbones (the first conv's GroupNorm spans the padded sequence)
    and for backbones run without a mask (attention over padded frames).
    """
    return config.padding_independent


@torch.no_grad()
def frozen_prefix_forward(
    model: FrameAlignedModelMixin,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen prefix: the hidden states entering transformer layer N, and the frame mask.

    Mirrors `Wav2Vec2Model.forward` + `Wav2Vec2Encoder(StableLayerNorm).forward` up to layer N (same modules, same
    order; HuBERT's and data2vec-audio's are the same sequence). Run the model in eval mode for a deterministic cache
    (`build_prefix_cache` does).

    Args:
        input_values: (B, S) padded 16 kHz waveforms.
        attention_mask: (B, S) 1 for real samples; the frame mask is computed from it even when the backbone
            does not receive it (`config.use_backbone_attention_mask`).
    Returns:
        hidden_states (B, T, H) and frame_mask (B, T) bool.
    """
    backbone, config = model.base_model, model.config
    encoder = backbone.encoder
    num_frozen = num_frozen_layers_of(model)

    features = backbone.feature_extractor(input_values).transpose(1, 2)
    batch_size, num_frames = features.shape[:2]
    frame_mask = model.frame_mask(num_frames, attention_mask, batch_size, features.device)
    backbone_mask = frame_mask if config.use_backbone_attention_mask and attention_mask is not None else None

    hidden_states = backbone.feature_projection(features)
    if isinstance(
        hidden_states, tuple
    ):  # wav2vec2, data2vec-audio: (projected, normalised features); HuBERT: a tensor
        hidden_states = hidden_states[0]
    hidden_states = backbone._mask_hidden_states(hidden_states, attention_mask=backbone_mask)  # SpecAugment
    if backbone_mask is not None:
        hidden_states = hidden_states.masked_fill(~backbone_mask.unsqueeze(-1), 0.0)
    layer_mask = create_bidirectional_mask(
        config=encoder.config, inputs_embeds=hidden_states, attention_mask=backbone_mask
    )
    hidden_states = hidden_states + encoder.pos_conv_embed(hidden_states)
    if not config.do_stable_layer_norm:  # post-norm: the encoder norm precedes layer 0, so it is frozen
        hidden_states = encoder.layer_norm(hidden_states)
    hidden_states = encoder.dropout(hidden_states)
    for layer in encoder.layers[:num_frozen]:
        if _skip_layer(encoder):
            continue
        hidden_states = layer(hidden_states, attention_mask=layer_mask)
    return hidden_states, frame_mask


def _skip_layer(encoder: nn.Module) -> bool:
    """LayerDrop, drawn exactly as `Wav2Vec2Encoder.forward` draws it."""
    if encoder.training and encoder.config.layerdrop > 0.0:
        return bool(torch.rand([]) < encoder.config.layerdrop)
    return False


def disable_frozen_prefix_regularization(model: FrameAlignedModelMixin) -> None:
    """Make the frozen part of an (uncached) model deterministic in train mode, as it is with the cache.

    Sets dropout to 0 in the feature projection, the encoder input and the lower N layers, and turns SpecAugment
    off. LayerDrop is one config value for all layers and is not touched (set `config.layerdrop = 0` yourself).
    With p = 0, dropout draws no random numbers, so the random stream of the top layers is the same with and
    without the cache.
    """
    num_frozen = num_frozen_layers_of(model)
    encoder = model.base_model.encoder
    modules = [model.base_model.feature_projection, encoder.dropout, *encoder.layers[:num_frozen]]
    for module in modules:
        for submodule in module.modules():
            if isinstance(submodule, nn.Dropout):
                submodule.p = 0.0
            elif hasattr(submodule, "dropout") and isinstance(submodule.dropout, float):  # Wav2Vec2Attention
                submodule.dropout = 0.0
    model.config.apply_spec_augment = False


class FrozenPrefixModel(nn.Module):
    """The trainable part of a stage-2 model, run on cached prefix outputs: layers[N:] → (final norm) → pooler →
    dropout → classifier. Returns the same `FrameAlignedClassifierOutput` as the full model, so
    `FrameAlignedTrainer.compute_loss` adds EAL and FUAL unchanged.

    Its submodules are the original model's own, registered under the same names (the backbone's prefix, e.g.
    `wav2vec2`, then `pooler`, `dropout`, `classifier`): its `state_dict()` is the original's, checkpoints
    `FrozenPrefixTrainer` writes load with the model class's `from_pretrained`, and after training the original
    `model` holds the
    trained weights. The frozen modules stay in the state dict (a checkpoint must be complete) but never run.

    Args:
        model: a `*ForFrameAlignedClassification` with `num_trainable_layers < num_hidden_layers` (see
            `check_prefix_cache_supported` for the models the cache cannot run).
    """

    # forward() takes no loss kwargs: the Trainer must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False
    main_input_name = "hidden_states"

    def __init__(self, model: FrameAlignedModelMixin):
        super().__init__()
        self.num_frozen_layers = num_frozen_layers_of(model)
        self.backbone_prefix = model.base_model_prefix
        setattr(self, model.base_model_prefix, model.base_model)
        self.pooler = model.pooler
        self.dropout = model.dropout
        self.classifier = model.classifier
        self._full_model = (model,)  # a tuple: not registered as a submodule, so no duplicate state-dict keys

    @property
    def full_model(self) -> FrameAlignedModelMixin:
        return self._full_model[0]

    @property
    def config(self):
        return self.full_model.config

    def freeze_for_training(self):
        """Called by `FrameAlignedTrainer`: the same `requires_grad` as the full model."""
        self.full_model.freeze_for_training()
        if self.full_model.num_frozen_layers != self.num_frozen_layers:
            raise ValueError("config.num_trainable_layers changed after the FrozenPrefixModel was built.")

    def save_pretrained(self, *args, **kwargs):
        return self.full_model.save_pretrained(*args, **kwargs)

    def gradient_checkpointing_enable(self, *args, **kwargs):
        return self.full_model.gradient_checkpointing_enable(*args, **kwargs)

    def gradient_checkpointing_disable(self):
        return self.full_model.gradient_checkpointing_disable()

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> tuple | FrameAlignedClassifierOutput:
        r"""
        hidden_states (`torch.FloatTensor` of shape `(batch_size, num_frames, hidden_size)`):
            Cached prefix output (`FrozenPrefixCollator` casts it to the compute dtype).
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`):
            `True` for frames computed from real samples.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Utterance labels; the output `loss` is their cross-entropy.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else getattr(config, "return_dict", True)
        encoder = getattr(self, self.backbone_prefix).encoder
        frame_mask = frame_mask.bool()
        layer_mask = None
        if config.use_backbone_attention_mask:
            layer_mask = create_bidirectional_mask(
                config=encoder.config, inputs_embeds=hidden_states, attention_mask=frame_mask
            )
        for layer in encoder.layers[self.num_frozen_layers :]:
            if _skip_layer(encoder):
                continue
            hidden_states = layer(hidden_states, attention_mask=layer_mask)
        if config.do_stable_layer_norm:  # pre-norm: the final norm follows the last layer, so it trains
            hidden_states = encoder.layer_norm(hidden_states)

        # From here on: the full model's own head (same modules, same order).
        output = self.full_model.classify_frames(hidden_states, frame_mask, labels)
        return output if return_dict else output.to_tuple()


__all__ = [
    "PREFIX_CACHE_BACKBONES",
    "FrozenPrefixModel",
    "check_prefix_cache_supported",
    "prefix_cache_problem",
    "disable_frozen_prefix_regularization",
    "frozen_prefix_forward",
    "is_padding_independent",
    "num_frozen_layers_of",
]
