"""Configuration of the frame- and utterance-aligned wav2vec 2.0 emotion classifier.

Self-contained (relative imports only) so it can be uploaded to the Hub as remote code next to
`modeling_frame_aligned.py`.
"""

from transformers import Wav2Vec2Config


POOLING_TYPES = ("mean", "attentive", "self_attention", "cls_attention")


def label_names(id2label: dict) -> list[str]:
    """The class names in class-index order, from an `id2label` with int keys (a config) or str keys (its JSON)."""
    return [id2label[key] for key in sorted(id2label, key=int)]


class Wav2Vec2FrameAlignedConfig(Wav2Vec2Config):
    r"""
    Configuration for [`Wav2Vec2ForFrameAlignedClassification`]: a wav2vec 2.0 backbone (every argument of
    [`Wav2Vec2Config`] is accepted) plus the pooling head and the auxiliary losses of Byun & Lee (2025),
    "Frame and Utterance Emotional Alignment for Speech Emotion Recognition".

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
            embedding) are frozen by [`~Wav2Vec2ForFrameAlignedClassification.freeze_for_training`]. `None` trains
            every transformer layer. The CNN feature encoder is always frozen.
        backbone_attention_mask (`bool`, *optional*):
            Whether the backbone receives `attention_mask`. `None` (default) passes it only for
            `feat_extract_norm="layer"` backbones: `"group"` ones (wav2vec2-base) were pre-trained on zero-padded
            batches without a mask. Pooling, frame weights and losses always use the true lengths.
    """

    model_type = "wav2vec2-frame-aligned"
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        if pooling not in POOLING_TYPES:
            raise ValueError(f"`pooling` must be one of {POOLING_TYPES}, got {pooling!r}.")
        if pooling in ("self_attention", "cls_attention") and self.hidden_size % pooling_num_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be divisible by `pooling_num_heads` ({pooling_num_heads})."
            )
        if num_trainable_layers is not None and not 0 <= num_trainable_layers <= self.num_hidden_layers:
            raise ValueError(
                f"`num_trainable_layers` must be between 0 and num_hidden_layers={self.num_hidden_layers}, "
                f"got {num_trainable_layers}."
            )
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

    @property
    def use_backbone_attention_mask(self) -> bool:
        """Whether `attention_mask` is forwarded to the wav2vec 2.0 backbone (see `backbone_attention_mask`)."""
        if self.backbone_attention_mask is not None:
            return bool(self.backbone_attention_mask)
        return self.feat_extract_norm == "layer"

    @property
    def uses_alignment_losses(self) -> bool:
        """EAL and FUAL are defined on the CLS pooling only (stage 2)."""
        return self.pooling == "cls_attention"


__all__ = ["Wav2Vec2FrameAlignedConfig", "POOLING_TYPES", "label_names"]
