"""The one place that knows how the backbone's conv stack turns samples into frames.

A stack of 1-D convolutions (kernels k_i, strides s_i, no padding) computes frame t from the samples
[t·hop, t·hop + receptive_field), with

    hop = Π_i s_i                                  (samples per frame)
    receptive_field = 1 + Σ_i (k_i − 1)·Π_{j<i} s_j (samples behind one frame)

so N samples give ⌊(N − receptive_field) / hop⌋ + 1 frames (none below the receptive field), the closed form of
`transformers`' layer-by-layer `_get_feat_extract_output_lengths`. wav2vec2-base (and HuBERT, WavLM,
data2vec-audio: the same conv stack) has kernels 10,3,3,3,3,2,2 and strides 5,2,2,2,2,2,2: hop 320 samples
(20 ms at 16 kHz), receptive field 400 samples (25 ms).

Whisper has no such stack: its log-mel spectrogram (a 400-sample window every 160 samples, 10 ms; Whisper's feature
extractor drops the STFT's last frame, so N samples give ⌊N/160⌋ mel frames) feeds two convolutions with padding 1,
the second of stride 2 (⌈m/2⌉ frames from m mel frames): N samples give ⌈⌊N/160⌋/2⌉ = ⌊(N − 160)/320⌋ + 1 frames,
exactly the count of a conv stack with kernels (160, 1) and strides (160, 2) (hop 320 samples, 20 ms; "receptive
field" 160 here means the fewest samples that give a frame, not the window behind it, which is wider).

Used by the model (frame mask, SpecAugment padding), the audio input (`MIN_SAMPLES`: the shortest clip that yields a
frame) and the timeline pipeline (windows on the frame grid). Part of the remote-code core; imports nothing.
"""

from typing import NamedTuple


# The conv stack of `Wav2Vec2Config()` (and of HuBERT, WavLM, data2vec-audio; a test keeps them equal): the default
# for audio read before a model is known (`modeling.audio.MIN_SAMPLES`).
WAV2VEC2_CONV_KERNEL = (10, 3, 3, 3, 3, 2, 2)
WAV2VEC2_CONV_STRIDE = (5, 2, 2, 2, 2, 2, 2)
# Whisper's frame count as a conv stack's (see above): the log-mel hop, then conv2's stride 2.
WHISPER_MEL_HOP = 160
WHISPER_CONV_KERNEL = (WHISPER_MEL_HOP, 1)
WHISPER_CONV_STRIDE = (WHISPER_MEL_HOP, 2)
WHISPER_MODEL_TYPES = ("whisper", "whisper-frame-aligned")


class FrameGeometry(NamedTuple):
    """(hop, receptive field) of a conv stack, in samples."""

    hop: int
    receptive_field: int


def conv_geometry(kernels, strides) -> FrameGeometry:
    """The hop and receptive field of convolutions with these kernels and strides (first layer first)."""
    if len(kernels) != len(strides):
        raise ValueError(f"{len(kernels)} conv kernels but {len(strides)} strides.")
    hop, receptive_field = 1, 1
    for kernel, stride in zip(kernels, strides):
        receptive_field += (kernel - 1) * hop
        hop *= stride
    return FrameGeometry(hop, receptive_field)


def frame_geometry(config) -> FrameGeometry:
    """The hop and receptive field of a model's conv stack, from `config.conv_kernel` and `config.conv_stride`
    (Whisper: its log-mel hop and conv2's stride, see the module docstring)."""
    if getattr(config, "model_type", None) in WHISPER_MODEL_TYPES:
        return conv_geometry(WHISPER_CONV_KERNEL, WHISPER_CONV_STRIDE)
    return conv_geometry(config.conv_kernel, config.conv_stride)


def frames_for_samples(num_samples, hop: int, receptive_field: int):
    """Frames the conv stack yields for `num_samples` samples: an int, or element-wise for a numpy array or torch
    tensor of lengths (0 below the receptive field)."""
    frames = (num_samples - receptive_field) // hop + 1
    return max(frames, 0) if isinstance(frames, int) else frames.clip(min=0)


def samples_for_frames(frames: int, hop: int, receptive_field: int) -> int:
    """The fewest samples from which the conv stack yields `frames` (≥ 1) frames."""
    return (frames - 1) * hop + receptive_field


__all__ = [
    "FrameGeometry",
    "WAV2VEC2_CONV_KERNEL",
    "WAV2VEC2_CONV_STRIDE",
    "WHISPER_MEL_HOP",
    "WHISPER_MODEL_TYPES",
    "conv_geometry",
    "frame_geometry",
    "frames_for_samples",
    "samples_for_frames",
]
