"""The one place audio is read, decoded, down-mixed, resampled and validated.

Used by the corpora checks, the collator, the pipelines and the timeline CLI. Decoding uses soundfile (libsndfile:
WAV, FLAC, OGG, MP3, ...) and resampling soxr, so no FFmpeg/torchcodec is needed. Where torchcodec (+ FFmpeg) is
importable, formats libsndfile cannot read (m4a, webm, ...) fall back to it, and torchcodec `AudioDecoder` objects
(what a `datasets` `Audio()` column yields with torchcodec installed) are accepted as input.
"""

import functools
import io
import os
from collections.abc import Iterator, Mapping

import numpy as np
import soundfile as sf
import soxr

from .frames import WAV2VEC2_CONV_KERNEL, WAV2VEC2_CONV_STRIDE, conv_geometry


TARGET_SAMPLING_RATE = 16_000
# The shortest clip that yields one frame: the receptive field of wav2vec2's conv stack (400 samples, 25 ms), the
# default for audio read without a model; the pipeline pads to its own model's receptive field.
MIN_SAMPLES = conv_geometry(WAV2VEC2_CONV_KERNEL, WAV2VEC2_CONV_STRIDE).receptive_field
# The file extensions taken as audio when a folder is searched (predict.py, the timeline CLI, your own corpus's
# `<label>/<file>` folders, an audiofolder): what libsndfile decodes (WAV, FLAC, OGG Vorbis/Opus, MP3, AIFF, AU, W64,
# CAF). Other formats (m4a, webm, ...) are read when named explicitly and torchcodec is installed.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".w64", ".caf")
_INTEGER_SCALES = {np.dtype(np.int16): 2**15, np.dtype(np.int32): 2**31, np.dtype(np.int8): 2**7}


class AudioInputError(ValueError):
    """Audio that cannot be used, with the offending input named in the message."""


@functools.lru_cache(maxsize=1)
def torchcodec_available() -> bool:
    """Whether torchcodec's audio decoder imports AND loads (PyPI wheels built for CUDA fail beside a CPU torch)."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401
    except Exception:  # ImportError, OSError (missing FFmpeg/CUDA libraries), RuntimeError
        return False
    return True


def is_audio_decoder(source) -> bool:
    """A torchcodec-style decoder (duck-typed): `get_all_samples()` → `.data` (channels, samples), `.sample_rate`."""
    return callable(getattr(source, "get_all_samples", None))


def describe_source(source) -> str:
    """A short human name for an audio input, for error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if is_audio_decoder(source):
        metadata = getattr(source, "metadata", None)
        path = getattr(metadata, "path", None) or getattr(source, "_hf_encoded", {}) or {}
        path = path.get("path") if isinstance(path, Mapping) else path
        return f"{type(source).__name__}({path})" if path else f"{type(source).__name__} input"
    if isinstance(source, Mapping):
        if source.get("path"):
            return str(source["path"])
        return f"dict input with keys {sorted(source)}"
    shape = getattr(source, "shape", None)
    return f"{type(source).__name__} input" + (f" of shape {tuple(shape)}" if shape is not None else "")


def open_audio_file(path, name: str | None = None) -> sf.SoundFile:
    """Open a file (or file-like object) for reading; a missing, directory or undecodable input is an
    `AudioInputError` naming it. Use as a context manager."""
    name = name or describe_source(path)
    if isinstance(path, (str, os.PathLike)):
        if not os.path.exists(path):
            raise AudioInputError(f"{name}: file does not exist.")
        if os.path.isdir(path):
            raise AudioInputError(f"{name}: is a directory, expected an audio file.")
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioInputError(
            f"{name}: cannot decode audio ({error}). Expected a file libsndfile reads (WAV, FLAC, OGG, MP3, ...)."
        ) from error


def read_audio_file(path: str | os.PathLike, name: str | None = None) -> tuple[np.ndarray, int]:
    """Decode a file (or file-like object) → (samples (num_samples, num_channels) float32, sampling rate).

    soundfile first; where it cannot decode and torchcodec is importable (`torchcodec_available`), torchcodec.
    Raises `AudioInputError` naming the input when neither can.
    """
    name = name or describe_source(path)
    try:
        with open_audio_file(path, name) as sound_file:
            try:
                samples = sound_file.read(dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as error:  # a header that decodes, then a corrupt body
                raise AudioInputError(f"{name}: cannot decode audio ({error}).") from error
            return samples, int(sound_file.samplerate)
    except AudioInputError as error:
        missing = isinstance(path, (str, os.PathLike)) and not os.path.isfile(path)
        if missing or not torchcodec_available():
            raise
        return _decode_with_torchcodec(path, name, error)


def _decode_with_torchcodec(source, name: str, soundfile_error: Exception) -> tuple[np.ndarray, int]:
    """torchcodec's decoder on a path or file-like object → (samples (num_samples, channels) float32, rate)."""
    try:  # inside try: transformers' remote-code import check must not make torchcodec a requirement of the Hub copy
        from torchcodec.decoders import AudioDecoder
    except ImportError as error:
        raise AudioInputError(f"{name}: cannot decode audio ({soundfile_error}); torchcodec: {error}.") from error

    if hasattr(source, "read"):
        source.seek(0)
        source = source.read()
    try:
        return decoder_samples(AudioDecoder(os.fspath(source) if isinstance(source, os.PathLike) else source), name)
    except Exception as error:
        raise AudioInputError(
            f"{name}: cannot decode audio, neither with soundfile ({soundfile_error}) nor torchcodec ({error})."
        ) from error


def decoder_samples(decoder, name: str) -> tuple[np.ndarray, int]:
    """All samples of a torchcodec-style `AudioDecoder` → ((num_samples, channels) float32, sampling rate)."""
    try:
        samples = decoder.get_all_samples()
        data, rate = samples.data, samples.sample_rate
    except Exception as error:
        raise AudioInputError(f"{name}: the audio decoder failed ({error}).") from error
    data = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
    if data.ndim == 1:
        data = data[None]
    return np.ascontiguousarray(data.T, dtype=np.float32), int(rate)


def to_float32(array, name: str) -> np.ndarray:
    """int8/int16/int32 PCM → [-1, 1); uint8 → centred; float16/32/64 → float32. Anything else is an error."""
    array = np.asarray(array)
    if array.dtype in _INTEGER_SCALES:
        return array.astype(np.float32) / _INTEGER_SCALES[array.dtype]
    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise AudioInputError(f"{name}: unsupported sample type {array.dtype}; expected int16/int32/float32/float64.")


def to_mono(array: np.ndarray, name: str, channels_last: bool | None = None) -> np.ndarray:
    """Average the channels of a (num_samples, channels) or (channels, num_samples) array → (num_samples,).

    For arrays of unknown layout the shorter axis is taken as channels.
    """
    if array.ndim == 1:
        return array
    if array.ndim != 2:
        raise AudioInputError(f"{name}: expected a 1-D or 2-D (samples × channels) array, got shape {array.shape}.")
    if channels_last is None:
        channels_last = array.shape[1] <= array.shape[0]
    return array.mean(axis=1 if channels_last else 0, dtype=np.float32)


def resample(array: np.ndarray, sampling_rate: int, target_sampling_rate: int = TARGET_SAMPLING_RATE) -> np.ndarray:
    """High-quality resampling (soxr) of a 1-D float32 array."""
    if sampling_rate == target_sampling_rate:
        return array
    return soxr.resample(array, sampling_rate, target_sampling_rate, quality="HQ").astype(np.float32, copy=False)


def validate_samples(array: np.ndarray, name: str) -> np.ndarray:
    if array.size == 0:
        raise AudioInputError(f"{name}: contains no samples (empty audio).")
    finite = np.isfinite(array)
    if not finite.all():
        first_bad = int(np.flatnonzero(~finite)[0])
        raise AudioInputError(
            f"{name}: contains {int((~finite).sum())} NaN/Inf samples (first at sample {first_bad}); "
            "expected finite values."
        )
    return array


def load_audio(
    source,
    sampling_rate: int | None = None,
    *,
    target_sampling_rate: int = TARGET_SAMPLING_RATE,
    min_samples: int = MIN_SAMPLES,
    name: str | None = None,
) -> np.ndarray:
    """Any supported audio input → 1-D float32 mono waveform at `target_sampling_rate`.

    Args:
        source: a file path; a `datasets` audio dict (`{"path", "bytes"}` or `{"array", "sampling_rate"}`);
            a pipeline dict `{"raw", "sampling_rate"}`; a torchcodec `AudioDecoder` (what a decoded `datasets`
            `Audio()` column holds; any object with `get_all_samples()` → `.data` (channels, samples),
            `.sample_rate`); or an array/tensor (then `sampling_rate` is required).
        sampling_rate: sampling rate of an array `source`.
        min_samples: clips shorter than this (the backbone's receptive field) are zero-padded at the end so the
            backbone yields at least one frame.
        name: how to call the input in error messages (defaults to the path or the type and shape).
    Returns:
        (num_samples,) float32.
    Raises:
        AudioInputError: the input is missing, unreadable, empty, non-finite or of an unknown type.
    """
    name = name or describe_source(source)
    channels_last = True
    if isinstance(source, (str, os.PathLike)):
        array, sampling_rate = read_audio_file(source, name)
    elif is_audio_decoder(source):
        array, sampling_rate = decoder_samples(source, name)
    elif isinstance(source, Mapping):
        array, sampling_rate, channels_last = _from_mapping(source, sampling_rate, name)
    else:
        if hasattr(source, "detach"):  # torch tensor
            source = source.detach().cpu().numpy()
        if sampling_rate is None:
            raise AudioInputError(f"{name}: an array needs its `sampling_rate`.")
        array, channels_last = source, None
    if sampling_rate is None or int(sampling_rate) <= 0:
        raise AudioInputError(f"{name}: invalid sampling rate {sampling_rate!r}.")
    if np.asarray(array).size == 0:  # before the dtype check: an empty list is float64, an empty file anything
        raise AudioInputError(f"{name}: contains no samples (empty audio).")
    array = to_mono(to_float32(array, name), name, channels_last=channels_last)
    array = validate_samples(array, name)
    array = resample(array, int(sampling_rate), target_sampling_rate)
    if len(array) < min_samples:
        array = np.pad(array, (0, min_samples - len(array)))
    return np.ascontiguousarray(array, dtype=np.float32)


def _from_mapping(source: Mapping, sampling_rate: int | None, name: str):
    """Unpack the dict forms of `load_audio` → (array, sampling rate, channels_last)."""
    if source.get("bytes") is not None:
        array, sampling_rate = read_audio_file(io.BytesIO(source["bytes"]), name)
        return array, sampling_rate, True
    for key in ("array", "raw"):
        if is_audio_decoder(source.get(key)):  # {"array": AudioDecoder} from a pipeline-style wrapper
            array, rate = decoder_samples(source[key], name)
            return array, rate, True
        if key in source and source[key] is not None:
            rate = source.get("sampling_rate", sampling_rate)
            array = source[key]
            if hasattr(array, "detach"):
                array = array.detach().cpu().numpy()
            return array, rate, None
    if source.get("path"):
        array, sampling_rate = read_audio_file(source["path"], name)
        return array, sampling_rate, True
    raise AudioInputError(
        f"{name}: expected a dict with 'path', 'bytes', 'array' or 'raw' (+ 'sampling_rate'), "
        f"got keys {sorted(source)}."
    )


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of a file from its header (no decoding; a format only torchcodec reads is decoded).

    The one reader of a file's length: the corpora, predict.py's and Ray's job planning, `input_duration`.

    Raises:
        AudioInputError: `{path}: cannot decode audio (<libsndfile's reason>).`, or a header with a sampling rate of
            0 (the message names the file).
    """
    return _header_duration(path, describe_source(path))


def input_duration(source, sampling_rate: int | None = None) -> float:
    """Duration in seconds of any `load_audio` input, without decoding where the format allows: a path or
    `{"path", "bytes"}` from the file header (soundfile; torchcodec's metadata as a fallback), an array from its
    length, an `AudioDecoder` from its metadata.

    Raises:
        AudioInputError: the header cannot be read (missing file, unknown format) or the input is of no known kind.
    """
    name = describe_source(source)
    if isinstance(source, Mapping):
        for key in ("array", "raw"):
            if source.get(key) is not None:
                return input_duration(source[key], source.get("sampling_rate", sampling_rate))
        if source.get("bytes") is not None:
            data = source["bytes"]
            return _header_duration(data if hasattr(data, "read") else io.BytesIO(data), name)
        if source.get("path"):
            return _header_duration(source["path"], name)
        raise AudioInputError(f"{name}: expected 'path', 'bytes', 'array' or 'raw', got keys {sorted(source)}.")
    if isinstance(source, (str, os.PathLike)):
        return _header_duration(source, name)
    if is_audio_decoder(source):
        duration = getattr(getattr(source, "metadata", None), "duration_seconds_from_header", None)
        if duration:
            return float(duration)
        array, rate = decoder_samples(source, name)
        return len(array) / rate
    if sampling_rate is None:
        raise AudioInputError(f"{name}: an array needs its `sampling_rate`.")
    shape = np.shape(source)
    num_samples = shape[0] if len(shape) == 1 else max(shape[:2]) if len(shape) == 2 else 0
    return num_samples / int(sampling_rate)


def _header_duration(source, name: str) -> float:
    try:
        info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        if not torchcodec_available() or (isinstance(source, (str, os.PathLike)) and not os.path.isfile(source)):
            raise AudioInputError(f"{name}: cannot decode audio ({error}).") from error
        soundfile_error = error  # `error` is unbound after the except clause
    else:
        if not info.samplerate:
            raise AudioInputError(f"{name}: cannot decode audio (its header gives a sampling rate of 0).")
        return info.frames / info.samplerate
    array, rate = _decode_with_torchcodec(source, name, soundfile_error)
    return len(array) / rate


def iter_audio_blocks(
    path: str | os.PathLike,
    block_seconds: float = 10.0,
    *,
    target_sampling_rate: int = TARGET_SAMPLING_RATE,
    name: str | None = None,
) -> Iterator[np.ndarray]:
    """Stream a (long) audio file as consecutive mono float32 blocks at `target_sampling_rate`, in bounded memory.

    The file is read `block_seconds` at a time (soundfile), down-mixed, checked for NaN/Inf and resampled with a
    streaming soxr resampler, so the concatenated blocks equal `load_audio(path)` (soxr's streaming and one-shot
    outputs are identical) while memory stays O(block), whatever the file's length.

    Args:
        path: an audio file libsndfile reads.
        block_seconds: input read per step, in seconds of the file's own rate.
        name: how to call the input in error messages (defaults to the path).
    Yields:
        (num_samples,) float32 blocks; lengths vary slightly (resampler delay) and the last one may be short.
    Raises:
        AudioInputError: missing, unreadable, empty or non-finite audio (raised when the bad block is reached).
    """
    name = name or describe_source(path)
    with open_audio_file(path, name) as sound_file:
        sampling_rate = int(sound_file.samplerate)
        block_frames = max(1, int(round(block_seconds * sampling_rate)))
        resampler = None
        if sampling_rate != target_sampling_rate:
            resampler = soxr.ResampleStream(sampling_rate, target_sampling_rate, 1, dtype="float32", quality="HQ")
        position = 0
        while True:
            try:
                block = sound_file.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError) as error:
                raise AudioInputError(f"{name}: cannot decode audio after sample {position} ({error}).") from error
            if len(block) == 0:
                break
            mono = np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))
            finite = np.isfinite(mono)
            if not finite.all():
                first_bad = position + int(np.flatnonzero(~finite)[0])
                raise AudioInputError(
                    f"{name}: contains NaN/Inf samples (first at sample {first_bad}); expected finite values."
                )
            position += len(mono)
            out = mono if resampler is None else resampler.resample_chunk(mono)
            if len(out):
                yield out
        if position == 0:
            raise AudioInputError(f"{name}: contains no samples (empty audio).")
        if resampler is not None:
            # Flush the samples the streaming resampler still holds back.
            tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
            if len(tail):
                yield tail


__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioInputError",
    "MIN_SAMPLES",
    "TARGET_SAMPLING_RATE",
    "audio_duration",
    "decoder_samples",
    "input_duration",
    "is_audio_decoder",
    "iter_audio_blocks",
    "load_audio",
    "open_audio_file",
    "read_audio_file",
    "resample",
    "to_float32",
    "to_mono",
    "torchcodec_available",
]
