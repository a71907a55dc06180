"""Batches of audio examples → padded `input_values`, `attention_mask` and `labels`."""

from dataclasses import dataclass

import numpy as np
import torch
from transformers import Wav2Vec2FeatureExtractor

from .audio import MIN_SAMPLES, TARGET_SAMPLING_RATE, load_audio
from .frames import WHISPER_MODEL_TYPES


@dataclass
class AudioClassificationCollator:
    """Decode (via `load_audio`), crop, normalise and pad a list of examples.

    Each example holds `audio_column` (a path or any input `load_audio` accepts) and, for training/evaluation,
    `label_column` (an int). Padding is dynamic (to the longest clip of the batch); `attention_mask` is always
    returned because the model derives its frame mask from it.

    Args:
        feature_extractor: normalisation and padding (`Wav2Vec2FeatureExtractor`).
        max_length_seconds: clips longer than this are cropped (a random window when `random_crop`, else the start).
        random_crop: crop at a random offset (training) instead of from the start (evaluation).
        min_samples: shorter clips are zero-padded to this length so that each yields a frame: the receptive field
            of the model's conv stack, `modeling.frames.frame_geometry(config).receptive_field` (the default is
            wav2vec2's, shared by HuBERT, WavLM and data2vec-audio).
    """

    feature_extractor: Wav2Vec2FeatureExtractor
    max_length_seconds: float | None = None
    random_crop: bool = False
    audio_column: str = "audio"
    label_column: str = "label"
    min_samples: int = MIN_SAMPLES
    distribution_column: str | None = None  # e.g. "label_distribution": soft targets → batch["label_distribution"]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        arrays = [self._load(example) for example in examples]
        batch = self.feature_extractor(
            arrays,
            sampling_rate=TARGET_SAMPLING_RATE,
            padding="longest",
            return_attention_mask=True,
            return_tensors="pt",
        )
        if examples and self.label_column in examples[0]:
            batch["labels"] = torch.tensor([int(example[self.label_column]) for example in examples])
        if self.distribution_column and examples and examples[0].get(self.distribution_column) is not None:
            rows = [example[self.distribution_column] for example in examples]
            batch["label_distribution"] = torch.tensor(rows, dtype=torch.float32)
        return dict(batch)

    def _load(self, example: dict) -> np.ndarray:
        array = load_audio(example[self.audio_column], min_samples=self.min_samples)
        if self.max_length_seconds is None:
            return array
        max_samples = int(self.max_length_seconds * TARGET_SAMPLING_RATE)
        if len(array) <= max_samples:
            return array
        offset = int(torch.randint(0, len(array) - max_samples + 1, ()).item()) if self.random_crop else 0
        return array[offset : offset + max_samples]


def make_feature_extractor(config=None) -> Wav2Vec2FeatureExtractor:
    """The feature extractor saved with every checkpoint: 16 kHz waveforms, attention mask, per-utterance
    normalisation (zero mean, unit variance), except for Whisper (`config.model_type` "whisper" or
    "whisper-frame-aligned"): its log-mel, computed inside the model as Whisper's feature extractor does, expects the
    raw amplitude (normalising would shift every log-mel value by the clip's gain)."""
    whisper = getattr(config, "model_type", None) in WHISPER_MODEL_TYPES
    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=TARGET_SAMPLING_RATE,
        padding_value=0.0,
        do_normalize=not whisper,
        return_attention_mask=True,
    )
