"""Configurations of the frame- and utterance-aligned emotion classifier, one per self-supervised backbone.

One head, five backbones: `FrameAlignedConfigMixin` holds the head's fields and checks; each backbone's config is
the mixin over that backbone's transformers config (`Wav2Vec2Config`, `HubertConfig`, `WavLMConfig`,
`Data2VecAudioConfig`, `WhisperConfig`: its encoder), so every backbone argument is accepted.

Self-contained (relative imports only) so it can be uploaded to the Hub as remote code next to
`modeling_frame_aligned.py`.
"""

from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig, WhisperConfig


POOLING_TYPES = ("mean", "attentive", "self_attention", "cls_attention")


def label_names(id2label: dict) -> list[str]:
    """The class names in class-index order, from an `id2label` with int keys (a config) or str keys (its JSON)."""
    return [id2label[key] for key in sorted(id2label, key=int)]


class FrameAlignedConfigMixin:
    r"""
    The frame-aligned head's part of a configuration: the pooling head and the auxiliary losses of Byun & Lee (2025),
    "Frame and Utterance Emotional Alignment for Speech Emotion Recognition". Mixed into one config per backbone
    ([`Wav2Vec2FrameAlignedConfig`], [`HubertFrameAlignedConfig`], [`WavLMFrameAlignedConfig`],
    [`Data2VecAudioFrameAlignedConfig`], [`WhisperFrameAlignedConfig`]); every argument of the backbone's
    transformers config is accepted too.

    Args:
        pooling (`str`, *optional*, defaults to `"attentive"`):
            How frames become one utterance vector. `"mean"`: masked average; `"attentive"`: learned frame scores
            + softmax (stage 1); `"self_attention"`: a small transformer encoder over the frames, then attentive
            pooling (the Table 3 baseline); `"cls_attention"`: a learnable CLS vector prepended to the frames and a
            small transformer encoder, the utterance vector is the CLS output (stage 2).
        pooling_num_heads (`int`, *optional*, defaults to 4):
            Attention heads of the pooling encoder (`self_attention` and `cls_attention`).
        pooling_num_layers (`int`, *optional*, defaults to 1):
            Layers of the pooling encoder.
        pooling_intermediate_size (`int`, *optional*):
            Feed-forward size of the pooling encoder; defaults to `intermediate_size`.
        pooling_dropout (`float`, *optional*, defaults to 0.0):
            Dropout inside the pooling encoder (the paper uses none).
        eal_margin (`float`, *optional*, defaults to 0.8):
            Margin m of the Emotional Attention Loss, softplus(m - cos(CLS, frame)).
        eal_weight (`float`, *optional*, defaults to 0.05):
            λ_EAL. Only used with `pooling="cls_attention"`.
        fual_weight (`float`, *optional*, defaults to 0.05):
            λ_FUAL. Only used with `pooling="cls_attention"`.
        fual_detach_target (`bool`, *optional*, defaults to `False`):
            Stop the gradient through the utterance distribution q in FUAL (only p̄ is pulled towards q).
        num_trainable_layers (`int`, *optional*):
            Number of top transformer layers to train; the lower ones (with the feature projection and positional
            embedding) are frozen by `freeze_for_training`. `None` trains every transformer layer, 0 freezes the
            whole backbone (the SUPERB setting, with `use_weighted_layer_sum=True`). The CNN is always frozen.
        backbone_attention_mask (`bool`, *optional*):
            Whether the backbone receives `attention_mask`. `None` (default) passes it only for
            `feat_extract_norm="layer"` backbones (data2vec-audio always has layer-normalised convolutions):
            `"group"` ones (wav2vec2-base, hubert-base, wavlm-base) were pre-trained on zero-padded batches without a
            mask. Pooling, frame weights and losses always use the true lengths.
        calibration_temperature (`float`, *optional*):
            Temperature T of the utterance probabilities, softmax(logits / T) (temperature scaling, Guo et al. 2017):
            fitted by train.py on each fold's validation split after checkpoint selection. The logits are unchanged
            (so is the predicted class); the pipelines, the ONNX backend, predict.py and score.py compute their
            probabilities with it (`prediction_fields.calibration_temperature`). `None`: not calibrated (T = 1).

    Inherited fields, and what the head does with them:
        use_weighted_layer_sum (`bool`): the pooling runs on softmax(w)·(all hidden states) instead of the last
            layer's output, w (num_hidden_layers + 1,) learnable (as in transformers' `*ForSequenceClassification`).
        classifier_proj_size (`int`): the head has no projection before the classifier (the classifier reads the
            pooled `hidden_size` vector). The backbone configs' default (256, present in every pre-trained
            checkpoint's config.json) is carried but unused; any other value raises `ValueError`.
        add_adapter (`bool`): not supported (`ValueError` when True).

    Raises:
        ValueError: an unknown `pooling`, `hidden_size` not divisible by `pooling_num_heads`, `num_trainable_layers`
            outside [0, num_hidden_layers], or an inherited field the head cannot honour (above).
    """

    # transformers turns every config subclass into a dataclass with a generated `__init__` unless the class defines
    # one itself: each backbone's config below binds this one (`__init__ = FrameAlignedConfigMixin.__init__`).

    # Per-frame tensors vary in length across batches: the Trainer must not gather them during evaluation.
    keys_to_ignore_at_inference = [
        "frame_logits",
        "frame_weights",
        "utterance_embedding",
        "frame_embeddings",
        "frame_mask",
        "hidden_states",
        "attentions",
    ]
    # The default of `classifier_proj_size` in every backbone config (the only value the head accepts: it is unused).
    unused_classifier_proj_size = 256

    def __init__(
        self,
        pooling="attentive",
        pooling_num_heads=4,
        pooling_num_layers=1,
        pooling_intermediate_size=None,
        pooling_dropout=0.0,
        eal_margin=0.8,
        eal_weight=0.05,
        fual_weight=0.05,
        fual_detach_target=False,
        num_trainable_layers=None,
        backbone_attention_mask=None,
        calibration_temperature=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pooling = pooling
        self.pooling_num_heads = pooling_num_heads
        self.pooling_num_layers = pooling_num_layers
        self.pooling_intermediate_size = pooling_intermediate_size
        self.pooling_dropout = pooling_dropout
        self.eal_margin = eal_margin
        self.eal_weight = eal_weight
        self.fual_weight = fual_weight
        self.fual_detach_target = fual_detach_target
        self.num_trainable_layers = num_trainable_layers
        self.backbone_attention_mask = backbone_attention_mask
        self.calibration_temperature = calibration_temperature
        self.check_head_fields()

    def check_head_fields(self):
        """Raise `ValueError` for head settings that cannot work and inherited fields the head would ignore.

        Run by `__init__` and again by the model's `__init__`: `from_pretrained(path, **kwargs)` sets its keyword
        arguments on the config after `__init__`, so a field given there is checked when the model is built.
        """
        name = type(self).__name__
        if self.pooling not in POOLING_TYPES:
            raise ValueError(f"{name}: `pooling` must be one of {POOLING_TYPES}, got {self.pooling!r}.")
        if self.pooling in ("self_attention", "cls_attention") and self.hidden_size % self.pooling_num_heads != 0:
            raise ValueError(
                f"{name}: `hidden_size` ({self.hidden_size}) must be divisible by `pooling_num_heads` "
                f"({self.pooling_num_heads})."
            )
        trainable = self.num_trainable_layers
        if trainable is not None and not 0 <= trainable <= self.num_hidden_layers:
            raise ValueError(
                f"{name}: `num_trainable_layers` must be between 0 and num_hidden_layers={self.num_hidden_layers}, "
                f"got {trainable}."
            )
        proj_size = getattr(self, "classifier_proj_size", None)
        if proj_size is not None and proj_size != self.unused_classifier_proj_size:
            raise ValueError(
                f"{name}: `classifier_proj_size={proj_size}` is not supported: the frame-aligned head has no "
                "projection before its classifier (the classifier reads the pooled hidden_size vector). Remove it "
                f"(the default {self.unused_classifier_proj_size} is carried but unused)."
            )
        temperature = getattr(self, "calibration_temperature", None)
        if temperature is not None and not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
            raise ValueError(
                f"{name}: `calibration_temperature` must be a positive number or None, got {temperature!r}."
            )
        if getattr(self, "add_adapter", False):
            raise ValueError(f"{name}: frame-aligned classification does not support adapters (add_adapter=True).")

    @property
    def use_backbone_attention_mask(self) -> bool:
        """Whether `attention_mask` is forwarded to the backbone (see `backbone_attention_mask`)."""
        if self.backbone_attention_mask is not None:
            return bool(self.backbone_attention_mask)
        return self.feat_extract_norm == "layer"

    @property
    def padding_independent(self) -> bool:
        """Whether a clip's outputs in a zero-padded batch equal its outputs alone (within float error): the
        backbone receives the attention mask and nothing in it normalises over time (`feat_extract_norm="layer"`;
        Whisper's conv stem has no norm). False for group-norm backbones such as wav2vec2-base, HuBERT-base and
        WavLM-base (the first conv's GroupNorm spans the padding, and, pre-trained without a mask, they attend over
        padded frames): their evaluation, scoring and pipeline batches hold one clip each (`evaluation_batches`), so
        a clip's scores never depend on its batch-mates."""
        return self.use_backbone_attention_mask and getattr(self, "feat_extract_norm", "layer") == "layer"

    @property
    def uses_alignment_losses(self) -> bool:
        """EAL and FUAL are defined on the CLS pooling only (stage 2)."""
        return self.pooling == "cls_attention"


class Wav2Vec2FrameAlignedConfig(FrameAlignedConfigMixin, Wav2Vec2Config):
    r"""
    Configuration for [`Wav2Vec2ForFrameAlignedClassification`]: a wav2vec 2.0 backbone (every argument of
    [`Wav2Vec2Config`] is accepted) plus the frame-aligned head (arguments: see [`FrameAlignedConfigMixin`]).
    """

    model_type = "wav2vec2-frame-aligned"
    __init__ = FrameAlignedConfigMixin.__init__  # transformers makes every config subclass a dataclass


class HubertFrameAlignedConfig(FrameAlignedConfigMixin, HubertConfig):
    r"""
    Configuration for [`HubertForFrameAlignedClassification`]: a HuBERT backbone (every argument of [`HubertConfig`]
    is accepted) plus the frame-aligned head (arguments: see [`FrameAlignedConfigMixin`]).
    """

    model_type = "hubert-frame-aligned"
    __init__ = FrameAlignedConfigMixin.__init__  # transformers makes every config subclass a dataclass


class WavLMFrameAlignedConfig(FrameAlignedConfigMixin, WavLMConfig):
    r"""
    Configuration for [`WavLMForFrameAlignedClassification`]: a WavLM backbone (every argument of [`WavLMConfig`] is
    accepted) plus the frame-aligned head (arguments: see [`FrameAlignedConfigMixin`]).
    """

    model_type = "wavlm-frame-aligned"
    __init__ = FrameAlignedConfigMixin.__init__  # transformers makes every config subclass a dataclass


class Data2VecAudioFrameAlignedConfig(FrameAlignedConfigMixin, Data2VecAudioConfig):
    r"""
    Configuration for [`Data2VecAudioForFrameAlignedClassification`]: a data2vec-audio backbone (every argument of
    [`Data2VecAudioConfig`] is accepted) plus the frame-aligned head (arguments: see [`FrameAlignedConfigMixin`]).

    data2vec-audio has layer-normalised convolutions and a post-norm encoder only: `feat_extract_norm` is `"layer"`
    and `do_stable_layer_norm` is `False` (read-only here; passing either raises `ValueError`).
    """

    model_type = "data2vec-audio-frame-aligned"
    feat_extract_norm = "layer"
    do_stable_layer_norm = False

    def __init__(self, **kwargs):
        for fixed in ("feat_extract_norm", "do_stable_layer_norm"):
            if fixed in kwargs and kwargs[fixed] != getattr(type(self), fixed):
                raise ValueError(
                    f"Data2VecAudioFrameAlignedConfig: data2vec-audio has no `{fixed}` setting (it is always "
                    f"{getattr(type(self), fixed)!r}), got {kwargs[fixed]!r}."
                )
            kwargs.pop(fixed, None)
        super().__init__(**kwargs)


class WhisperFrameAlignedConfig(FrameAlignedConfigMixin, WhisperConfig):
    r"""
    Configuration for [`WhisperForFrameAlignedClassification`]: Whisper's encoder (every argument of
    [`WhisperConfig`] is accepted; the decoder's are carried but unused) plus the frame-aligned head (arguments: see
    [`FrameAlignedConfigMixin`]), and:

    Args:
        pad_to_30_seconds (`bool`, *optional*, defaults to `False`):
            `False`: the encoder runs on each clip's own frames (positional embeddings 0..T-1, padded frames masked).
            `True`: every clip is zero-padded to 30 s (`max_source_positions` frames) and the encoder attends to the
            padding without a mask, as in Whisper's pre-training and transformers' `WhisperForAudioClassification`;
            pooling and losses still use only the clip's own frames. For comparison (7.5× the compute on 4 s clips).
        final_dropout (`float`, *optional*, defaults to 0.0):
            Dropout before the classifier (the wav2vec 2.0 configs' field; Whisper's config has none).

    The head reads `intermediate_size` (the pooling encoder's default feed-forward size), `hidden_act`,
    `layer_norm_eps` and `initializer_range`; here they are Whisper's `encoder_ffn_dim`, `activation_function`, the
    encoder's LayerNorm eps (1e-5) and `init_std`. `use_backbone_attention_mask` is `True` unless
    `backbone_attention_mask=False` (the encoder then attends to padded frames). `apply_spec_augment=True`
    (Whisper's default: `False`) masks the log-mel in training as transformers' `WhisperModel` does
    (`mask_time_prob`, `mask_time_length`, `mask_time_min_masks` in 10 ms mel frames of each clip's own length;
    `mask_feature_prob`, `mask_feature_length`, `mask_feature_min_masks` in mel bins; masked values set to 0).
    """

    model_type = "whisper-frame-aligned"
    layer_norm_eps = 1e-5  # Whisper's encoder uses nn.LayerNorm's default

    def __init__(self, pad_to_30_seconds=False, final_dropout=0.0, **kwargs):
        self.pad_to_30_seconds = pad_to_30_seconds
        self.final_dropout = final_dropout
        kwargs["is_encoder_decoder"] = False  # the encoder only (a Whisper checkpoint's config.json says True)
        super().__init__(**kwargs)

    @property
    def intermediate_size(self) -> int:
        return self.encoder_ffn_dim

    @property
    def hidden_act(self) -> str:
        return self.activation_function

    @property
    def initializer_range(self) -> float:
        return self.init_std

    @property
    def use_backbone_attention_mask(self) -> bool:
        return self.backbone_attention_mask is not False

    @property
    def padding_independent(self) -> bool:
        """With `pad_to_30_seconds` every clip is padded to 30 s whatever its batch; otherwise the key mask."""
        return self.pad_to_30_seconds or self.use_backbone_attention_mask

    def check_head_fields(self):
        super().check_head_fields()
        if not isinstance(self.pad_to_30_seconds, bool):
            raise ValueError(
                f"WhisperFrameAlignedConfig: `pad_to_30_seconds` must be a bool, got {self.pad_to_30_seconds!r}."
            )


# The frame-aligned config of each backbone, by the `model_type` of the backbone's own config (a plain pre-trained
# checkpoint) and of ours (a frame-aligned checkpoint).
FRAME_ALIGNED_CONFIGS = {
    config_class.model_type: config_class
    for config_class in (
        Wav2Vec2FrameAlignedConfig,
        HubertFrameAlignedConfig,
        WavLMFrameAlignedConfig,
        Data2VecAudioFrameAlignedConfig,
        WhisperFrameAlignedConfig,
    )
}
BACKBONE_MODEL_TYPES = {
    "wav2vec2": "wav2vec2-frame-aligned",
    "hubert": "hubert-frame-aligned",
    "wavlm": "wavlm-frame-aligned",
    "data2vec-audio": "data2vec-audio-frame-aligned",
    "whisper": "whisper-frame-aligned",
}


def frame_aligned_config_class(model_type: str):
    """The frame-aligned config class for a backbone's `model_type` ("wavlm") or a frame-aligned one
    ("wavlm-frame-aligned").

    Raises:
        ValueError: a model type no frame-aligned class exists for (the message lists the supported ones).
    """
    resolved = BACKBONE_MODEL_TYPES.get(model_type, model_type)
    if resolved not in FRAME_ALIGNED_CONFIGS:
        raise ValueError(
            f"No frame-aligned model for model_type {model_type!r}: supported backbones are "
            f"{sorted(BACKBONE_MODEL_TYPES)} (and their frame-aligned checkpoints {sorted(FRAME_ALIGNED_CONFIGS)})."
        )
    return FRAME_ALIGNED_CONFIGS[resolved]


__all__ = [
    "BACKBONE_MODEL_TYPES",
    "Data2VecAudioFrameAlignedConfig",
    "FRAME_ALIGNED_CONFIGS",
    "FrameAlignedConfigMixin",
    "HubertFrameAlignedConfig",
    "POOLING_TYPES",
    "Wav2Vec2FrameAlignedConfig",
    "WavLMFrameAlignedConfig",
    "WhisperFrameAlignedConfig",
    "frame_aligned_config_class",
    "label_names",
]
