"""The one audio-input path: every bad input is handled correctly or rejected with an error naming it."""

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import MIN_SAMPLES, AudioInputError, audio_duration, iter_audio_blocks, load_audio
from modeling.collator import AudioClassificationCollator, make_feature_extractor


def tone(sampling_rate, seconds=1.0, frequency=440.0):
    t = np.arange(int(sampling_rate * seconds)) / sampling_rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(waveform, sampling_rate=16000):
    spectrum = np.abs(np.fft.rfft(waveform))
    return np.fft.rfftfreq(len(waveform), 1 / sampling_rate)[spectrum.argmax()]


def write(tmp_path, name, data, sampling_rate=16000, **kwargs):
    path = tmp_path / name
    sf.write(path, data, sampling_rate, **kwargs)
    return str(path)


# Each case builds (source, sampling_rate) in tmp_path and states the outcome: an error matching a pattern that
# names the input, or a check of the decoded 16 kHz waveform.
def _error(pattern):
    return ("error", pattern)


def _ok(check):
    return ("ok", check)


def _is_tone(expected_seconds):
    def check(waveform):
        assert len(waveform) == pytest.approx(16000 * expected_seconds, abs=2)
        assert dominant_frequency(waveform) == pytest.approx(440, abs=2)
        assert np.abs(waveform).max() == pytest.approx(0.5, abs=0.02)

    return check


def _streams_in_bounded_blocks(expected_seconds, block_seconds=5.0):
    """Very long audio: `iter_audio_blocks` (the timeline's reader) never holds more than about one block."""

    def check(path):
        total, largest = 0, 0
        for block in iter_audio_blocks(path, block_seconds=block_seconds):
            assert block.dtype == np.float32 and np.isfinite(block).all()
            total, largest = total + len(block), max(largest, len(block))
        assert total == pytest.approx(16000 * expected_seconds, abs=16)
        assert largest <= 16000 * block_seconds * 1.01

    return check


def _equals(expected):
    def check(waveform):
        np.testing.assert_allclose(waveform, expected, atol=1e-6)

    return check


CASES = {
    "missing file": (lambda d: (str(d / "nope.wav"), None), _error(r"nope\.wav: file does not exist")),
    "directory": (lambda d: (str(d), None), _error(r"is a directory")),
    "empty wav file": (
        lambda d: (write(d, "empty.wav", np.zeros(0, np.float32)), None),
        _error(r"empty\.wav: contains no samples"),
    ),
    "corrupt wav": (
        lambda d: (
            (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 3) and str(d / "corrupt.wav"),
            None,
        ),
        _error(r"corrupt\.wav: cannot decode audio"),
    ),
    "text file": (
        lambda d: ((d / "notes.txt").write_text("not audio at all\n") and str(d / "notes.txt"), None),
        _error(r"notes\.txt: cannot decode audio"),
    ),
    "zero-length array": (
        lambda d: (np.zeros(0, np.float32), 16000),
        _error(r"ndarray input of shape \(0,\): contains no samples"),
    ),
    "empty list": (lambda d: ([], 16000), _error(r"contains no samples")),
    "array without sampling rate": (
        lambda d: (np.zeros(1600, np.float32), None),
        _error(r"needs its `sampling_rate`"),
    ),
    "negative sampling rate": (lambda d: (np.zeros(1600, np.float32), -5), _error(r"invalid sampling rate -5")),
    "NaN samples": (
        lambda d: (np.array([0.1, np.nan, 0.2] * 200, np.float32), 16000),
        _error(r"200 NaN/Inf samples \(first at sample 1\)"),
    ),
    "Inf samples": (
        lambda d: (np.array([0.1] * 500 + [np.inf], np.float32), 16000),
        _error(r"1 NaN/Inf samples \(first at sample 500\)"),
    ),
    "3-D array": (lambda d: (np.zeros((2, 2, 400), np.float32), 16000), _error(r"expected a 1-D or 2-D")),
    "string array": (lambda d: (np.array(["a", "b"]), 16000), _error(r"unsupported sample type")),
    "dict without audio": (
        lambda d: ({"sampling_rate": 16000, "foo": 1}, None),
        _error(r"expected a dict with 'path', 'bytes', 'array' or 'raw'"),
    ),
    "shorter than receptive field": (
        lambda d: (np.full(100, 0.25, np.float32), 16000),
        _ok(
            lambda w: (len(w) == MIN_SAMPLES and np.allclose(w[:100], 0.25) and np.all(w[100:] == 0)) or pytest.fail(w)
        ),
    ),
    "int16 array": (
        lambda d: (np.array([0, 16384, -32768] * 200, np.int16), 16000),
        _ok(_equals(np.array([0, 0.5, -1.0] * 200))),
    ),
    "int32 array": (
        lambda d: (np.array([0, 2**30, -(2**31)] * 200, np.int32), 16000),
        _ok(_equals(np.array([0, 0.5, -1.0] * 200))),
    ),
    "float64 array": (
        lambda d: (np.array([0.25, -0.5] * 300, np.float64), 16000),
        _ok(_equals(np.array([0.25, -0.5] * 300))),
    ),
    "torch tensor": (lambda d: (torch.tensor([0.25, -0.5] * 300), 16000), _ok(_equals(np.array([0.25, -0.5] * 300)))),
    "stereo array (samples, channels)": (
        lambda d: (np.stack([np.full(800, 0.2), np.full(800, 0.6)], axis=1).astype(np.float32), 16000),
        _ok(_equals(np.full(800, 0.4))),
    ),
    "stereo array (channels, samples)": (
        lambda d: (np.stack([np.full(800, 0.2), np.full(800, 0.6)], axis=0).astype(np.float32), 16000),
        _ok(_equals(np.full(800, 0.4))),
    ),
    "stereo wav file": (
        lambda d: (write(d, "stereo.wav", np.stack([tone(16000), tone(16000)], axis=1)), None),
        _ok(_is_tone(1.0)),
    ),
    "6-channel flac": (
        lambda d: (write(d, "surround.flac", np.repeat(tone(16000)[:, None], 6, axis=1)), None),
        _ok(_is_tone(1.0)),
    ),
    "8 kHz wav": (lambda d: (write(d, "8k.wav", tone(8000), 8000), None), _ok(_is_tone(1.0))),
    "22.05 kHz wav": (lambda d: (write(d, "22k.wav", tone(22050), 22050), None), _ok(_is_tone(1.0))),
    "44.1 kHz flac": (lambda d: (write(d, "44k.flac", tone(44100), 44100), None), _ok(_is_tone(1.0))),
    "48 kHz ogg": (
        lambda d: (write(d, "48k.ogg", tone(48000), 48000, format="OGG", subtype="VORBIS"), None),
        _ok(_is_tone(1.0)),
    ),
    "48 kHz array": (lambda d: (tone(48000, seconds=0.5), 48000), _ok(_is_tone(0.5))),
    "pipeline dict": (lambda d: ({"raw": tone(22050), "sampling_rate": 22050}, None), _ok(_is_tone(1.0))),
    "datasets dict with bytes": (
        lambda d: ({"path": "x.flac", "bytes": open(write(d, "b.flac", tone(44100), 44100), "rb").read()}, None),
        _ok(_is_tone(1.0)),
    ),
    "datasets dict with path": (
        lambda d: ({"path": write(d, "p.wav", tone(8000), 8000), "bytes": None}, None),
        _ok(_is_tone(1.0)),
    ),
    "int16 pcm wav": (lambda d: (write(d, "pcm16.wav", tone(16000), subtype="PCM_16"), None), _ok(_is_tone(1.0))),
    "very long 48 kHz stereo file (10 min)": (
        lambda d: (write(d, "long.flac", np.repeat(tone(48000, seconds=600)[:, None], 2, axis=1) * 0.5, 48000), None),
        ("stream", _streams_in_bounded_blocks(600)),
    ),
    "clipped wav": (
        lambda d: (write(d, "clipped.wav", np.clip(tone(16000) * 4, -1, 1)), None),
        _ok(lambda w: np.abs(w).max() == pytest.approx(1.0, abs=1e-3) or pytest.fail("clipping changed")),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_matrix(case, tmp_path):
    make_input, (outcome, expectation) = CASES[case]
    source, sampling_rate = make_input(tmp_path)
    if outcome == "error":
        with pytest.raises(AudioInputError, match=expectation):
            load_audio(source, sampling_rate)
    elif outcome == "stream":
        expectation(source)
    else:
        waveform = load_audio(source, sampling_rate)
        assert waveform.dtype == np.float32 and waveform.ndim == 1
        expectation(waveform)


def test_error_names_the_input_given_by_the_caller():
    with pytest.raises(AudioInputError, match=r"^row 17 of metadata\.csv: contains no samples"):
        load_audio(np.zeros(0), 16000, name="row 17 of metadata.csv")


def test_shortest_clip_still_yields_a_frame_through_the_model():
    """25 ms is the conv stack's receptive field: shorter clips are padded, never a 0-frame crash."""
    config = tiny_config(conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_dim=(16,) * 7)
    model = Wav2Vec2ForFrameAlignedClassification(config).eval()
    collator = AudioClassificationCollator(make_feature_extractor())
    batch = collator([{"audio": {"raw": np.full(10, 0.1, np.float32), "sampling_rate": 16000}}])
    with torch.no_grad():
        out = model(**batch)
    assert out.frame_mask.sum() == 1 and torch.isfinite(out.logits).all()


def test_real_clip_and_its_duration():
    path, _ = polish3_clips(1)[0]
    waveform = load_audio(path)
    assert len(waveform) / 16000 == pytest.approx(audio_duration(path), abs=1e-4)
    assert 0.01 < np.abs(waveform).max() <= 1.0
