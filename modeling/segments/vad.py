"""The built-in voice-activity detector: silero-vad (MIT; its model ships inside the pip package, so it works
offline), run as a stream over a recording of any length.

silero-vad's sequence ONNX model (`load_silero_vad(sequence=True)`) computes one speech probability per 32 ms frame
(512 samples at 16 kHz, each with the previous frame's last 64 samples as context) and carries its LSTM state
between calls; here the file is streamed in blocks (`audio.iter_audio_blocks`), each block's whole frames go through
one ONNX call with the state carried over, and only the per-frame probabilities are kept (4 bytes per 32 ms: 4.5 MB
for 10 hours). silero's own state machine (`get_speech_timestamps_from_probs`) turns them into speech regions, so
the regions equal `get_speech_timestamps_sequence` on the whole array (tests/test_vad.py).
"""

import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..audio import describe_source, iter_audio_blocks, load_audio
from ..timeline_recording import Segment


VAD_RATE = 16_000
FRAME, CONTEXT = 512, 64  # silero-vad's 16 kHz frame and context (silero_vad.sequence_vad.RATE_CONFIG)


@dataclass(frozen=True)
class VadSettings:
    """silero-vad's own parameters (`get_speech_timestamps`), with its defaults; times in seconds."""

    threshold: float = 0.5
    min_speech_s: float = 0.25
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.03
    max_speech_s: float = float("inf")


class _Session:
    _model = None

    @classmethod
    def get(cls):
        if cls._model is None:
            try:
                from silero_vad import load_silero_vad
            except ImportError as error:
                raise ImportError(
                    'The voice-activity detector needs silero-vad: pip install -e ".[vad]" (or give segment files).'
                ) from error
            cls._model = load_silero_vad(sequence=True)
        return cls._model.session


def speech_probabilities(blocks, block_frames: int = 512) -> tuple[np.ndarray, int]:
    """Per-frame speech probabilities of a stream of 16 kHz float32 blocks → ((num_frames,) float32, samples)."""
    session = _Session.get()
    hidden = np.zeros((1, 1, 128), dtype=np.float32)
    cell = np.zeros((1, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    pending = np.zeros(0, dtype=np.float32)
    probabilities, total = [], 0

    def run(samples: np.ndarray):
        nonlocal hidden, cell, context
        frames = samples.reshape(-1, FRAME)
        contexts = np.empty((len(frames), CONTEXT), dtype=np.float32)
        contexts[0] = context
        contexts[1:] = frames[:-1, -CONTEXT:]
        context = frames[-1, -CONTEXT:].copy()
        values, hidden, cell = session.run(
            ["speech_probs", "hn", "cn"], {"input": np.concatenate([contexts, frames], axis=1), "h": hidden, "c": cell}
        )
        probabilities.append(np.asarray(values, dtype=np.float32).reshape(-1))

    for block in blocks:
        total += len(block)
        pending = np.concatenate([pending, np.asarray(block, dtype=np.float32)])
        whole = len(pending) // FRAME * FRAME
        for start in range(0, whole, block_frames * FRAME):
            run(pending[start : min(whole, start + block_frames * FRAME)])
        pending = pending[whole:]
    if len(pending):  # the last partial frame, zero-padded as silero does
        run(np.pad(pending, (0, FRAME - len(pending))))
    return (np.concatenate(probabilities) if probabilities else np.zeros(0, np.float32)), total


def detect_speech(audio, settings: VadSettings | None = None, sampling_rate: int | None = None) -> list[Segment]:
    """Speech regions of a recording (a path streamed from disk, or an array at `sampling_rate`), as `Segment`s
    (speaker None, source "vad"). A recording without speech gives [] and a warning naming it."""
    settings = settings or VadSettings()
    name = describe_source(audio)
    if isinstance(audio, (str, os.PathLike)):
        blocks = iter_audio_blocks(audio, block_seconds=30.0, target_sampling_rate=VAD_RATE, name=name)
    else:
        blocks = [load_audio(audio, sampling_rate, target_sampling_rate=VAD_RATE, min_samples=1, name=name)]
    probabilities, total = speech_probabilities(blocks)
    from silero_vad import get_speech_timestamps_from_probs

    regions = get_speech_timestamps_from_probs(
        probabilities,
        sampling_rate=VAD_RATE,
        threshold=settings.threshold,
        min_speech_duration_ms=int(settings.min_speech_s * 1000),
        max_speech_duration_s=settings.max_speech_s,
        min_silence_duration_ms=int(settings.min_silence_s * 1000),
        speech_pad_ms=int(settings.speech_pad_s * 1000),
        audio_length_samples=total,
    )
    segments = [
        Segment(region["start"] / VAD_RATE, region["end"] / VAD_RATE, None, f"vad region {i}")
        for i, region in enumerate(regions)
    ]
    if not segments:
        warnings.warn(f"{name}: the voice-activity detector found no speech; the result is empty.", stacklevel=2)
    return segments
