"""Shared test helpers: tiny model configs and real speech clips."""

from pathlib import Path

from modeling import Wav2Vec2FrameAlignedConfig


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POLISH3 = next(
    (p for p in (REPO / "data" / "polish3", SHARED_DATA / "polish3") if (p / "metadata.csv").exists()), None
)
NEMO4 = SHARED_DATA / "nemo4" if (SHARED_DATA / "nemo4" / "metadata.csv").exists() else None
POLISH3_LABELS = ["anger", "fear", "neutral"]


def tiny_config(**overrides) -> Wav2Vec2FrameAlignedConfig:
    """A 2-layer, hidden-32 backbone with a 3-layer conv stack (stride 5·2·2 = 20 samples per frame).

    Dropout, LayerDrop and SpecAugment are off so outputs are deterministic; tests turn them on when needed.
    """
    settings = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 3, 3),
        conv_stride=(5, 2, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
        num_labels=3,
        id2label=dict(enumerate(POLISH3_LABELS)),
        label2id={name: i for i, name in enumerate(POLISH3_LABELS)},
        pooling="cls_attention",
    )
    settings.update(overrides)
    return Wav2Vec2FrameAlignedConfig(**settings)


def layer_norm_overrides() -> dict:
    """A pre-norm backbone with layer-normalised convolutions: it receives the attention mask."""
    return dict(feat_extract_norm="layer", do_stable_layer_norm=True)


def polish3_clips(count: int = 4) -> list[tuple[str, int]]:
    """(path, label id) of real clips with different lengths and labels."""
    import csv

    with open(POLISH3 / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda row: float(row["duration_s"]))
    step = max(1, len(rows) // count)
    picked = rows[::step][:count]
    return [(str(POLISH3 / row["file"]), POLISH3_LABELS.index(row["label"])) for row in picked]


# The backbones behind the frame-aligned head: model_type → (transformers' plain config, plain model) class names.
BACKBONES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioModel"),
    "whisper": ("WhisperConfig", "WhisperModel"),  # the encoder of any Whisper checkpoint; tiny: TINY_WHISPER
}
# Each backbone's `base_model_prefix` (the attribute and state-dict prefix of its encoder).
PREFIXES = {
    "wav2vec2": "wav2vec2",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "data2vec-audio": "data2vec_audio",
    "whisper": "model",
}


def tiny_backbone_settings(model_type: str, **overrides) -> dict:
    """`tiny_config`'s backbone (no head fields) for any backbone; data2vec-audio's positional embedding is a stack of
    `num_conv_pos_embeddings` conv layers (2 here) of kernel `conv_pos_kernel_size`, and it has no norm settings.
    "whisper": `TINY_WHISPER` (its encoder: 2 layers, d_model 32) and the overrides but conv ones (a fixed stem)."""
    if model_type == "whisper":
        return {**TINY_WHISPER, **{key: value for key, value in overrides.items() if not key.startswith("conv_")}}
    settings = {key: value for key, value in tiny_config().to_diff_dict().items() if key in TINY_BACKBONE_KEYS}
    if model_type == "data2vec-audio":
        settings.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=5)
    settings.update(overrides)
    return settings


TINY_BACKBONE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "conv_dim",
    "conv_kernel",
    "conv_stride",
    "num_conv_pos_embeddings",
    "num_conv_pos_embedding_groups",
    "hidden_dropout",
    "attention_dropout",
    "activation_dropout",
    "feat_proj_dropout",
    "final_dropout",
    "layerdrop",
    "mask_time_prob",
)


# A tiny Whisper (encoder 2 × d_model 32, decoder 1 layer, 100 tokens): transformers' own classes, real 80-bin log-mel.
TINY_WHISPER = dict(
    d_model=32,
    encoder_layers=2,
    encoder_attention_heads=2,
    encoder_ffn_dim=64,
    decoder_layers=1,
    decoder_attention_heads=2,
    decoder_ffn_dim=64,
    vocab_size=100,
    max_target_positions=32,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    decoder_start_token_id=1,
)


def save_plain_backbone(model_type: str, directory, seed: int = 0, model_class: str | None = None, **overrides):
    """A tiny checkpoint saved with transformers' own `*Model` class (what a Hub backbone repo holds); returns it.
    "whisper": `TINY_WHISPER` (conv overrides do not apply), saved as `model_class` (default `WhisperModel`)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config_name, model_name = BACKBONES[model_type]
    config = getattr(transformers, config_name)(**tiny_backbone_settings(model_type, **overrides))
    model = getattr(transformers, model_class or model_name)(config)
    model.save_pretrained(directory)
    from modeling.collator import make_feature_extractor

    make_feature_extractor(config).save_pretrained(directory)
    return model


def tiny_frame_aligned_model(model_type: str, seed: int = 0, **head):
    """A tiny randomly initialised `*ForFrameAlignedClassification` of any backbone (polish3's 3 classes, stage 2's
    CLS pooling by default), built through the one loader's `from_config`."""
    import torch

    from modeling import AutoModelForFrameAlignedClassification
    from modeling.configuration_frame_aligned import frame_aligned_config_class

    settings = {
        "pooling": "cls_attention",
        "num_labels": 3,
        "id2label": dict(enumerate(POLISH3_LABELS)),
        "label2id": {name: i for i, name in enumerate(POLISH3_LABELS)},
        **tiny_backbone_settings(model_type),
        **head,
    }
    torch.manual_seed(seed)
    config = frame_aligned_config_class(model_type)(**settings)
    return AutoModelForFrameAlignedClassification.from_config(config).eval()


def markdown_blocks(path, language: str) -> list[str]:
    """The fenced ```<language> blocks of a Markdown file, in order (their text, without the fences)."""
    import re

    text = Path(path).read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.S | re.M)
