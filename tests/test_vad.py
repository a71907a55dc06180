"""modeling/segments/vad.py: silero-vad streamed over a file block by block finds the same speech regions as
silero's own whole-array call, finds the words of a real recording with silences between them, and a file without
speech gives no segments and a warning (not a crash)."""

import numpy as np
import pytest
import soundfile as sf
from helpers import polish3_clips
from silero_vad import get_speech_timestamps_sequence, load_silero_vad

from modeling.audio import load_audio
from modeling.segments.vad import VAD_RATE, detect_speech, speech_probabilities


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    """Four polish3 words with 1.5 s of silence around each, as a 16 kHz FLAC, and where each word is."""
    silence = np.zeros(int(1.5 * VAD_RATE), np.float32)
    pieces, spans, position = [silence], [], len(silence)
    for path, _ in polish3_clips(4):
        clip = load_audio(path)
        pieces += [clip, silence]
        spans.append((position / VAD_RATE, (position + len(clip)) / VAD_RATE))
        position += len(clip) + len(silence)
    audio = np.concatenate(pieces)
    path = tmp_path_factory.mktemp("vad") / "words.flac"
    sf.write(path, audio, VAD_RATE, subtype="PCM_16")
    return str(path), load_audio(path), spans


def test_streamed_regions_equal_silero_on_the_whole_array(words):
    path, audio, spans = words
    streamed = detect_speech(path)
    whole = get_speech_timestamps_sequence(audio, load_silero_vad(sequence=True))
    assert [(s.start_s, s.end_s) for s in streamed] == [(r["start"] / VAD_RATE, r["end"] / VAD_RATE) for r in whole]
    # Blocks of any size give the same probabilities as one block.
    small, total = speech_probabilities(np.array_split(audio, 37), block_frames=5)
    np.testing.assert_allclose(small, speech_probabilities([audio])[0], atol=1e-5)
    assert total == len(audio)
    # One region per word, each overlapping its word.
    assert len(streamed) == len(spans)
    for segment, (start, end) in zip(streamed, spans):
        assert segment.start_s < end and start < segment.end_s
        assert segment.speaker is None and segment.source.startswith("vad region")


def test_an_array_at_another_rate(words):
    _, audio, _ = words
    low = load_audio(audio, VAD_RATE, target_sampling_rate=8000)
    assert len(detect_speech(low, sampling_rate=8000)) == 4


def test_silence_only_gives_no_segments_and_a_warning(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * VAD_RATE, np.float32), VAD_RATE)
    with pytest.warns(UserWarning, match=r"silence.wav: the voice-activity detector found no speech"):
        assert detect_speech(str(path)) == []
