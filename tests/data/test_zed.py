"""modeling/data/zed.py: ZED.json in the release layout SpeechBrain's recipe reads ("datafolder" = the ZED folder),
one emotion event per utterance inside neutral speech, the reference segments EDER scores, every problem listed."""

import json

import numpy as np
import pytest
import soundfile as sf

from modeling.data.corpus import CorpusError
from modeling.data.zed import ZED, read_zed
from modeling.metrics.eder import emotion_diarization_error


def write_zed(folder, entries: dict):
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    for key, entry in entries.items():
        if entry.get("wav", "").startswith("datafolder/"):
            sf.write(folder / entry["wav"].replace("datafolder/", ""), np.zeros(int(entry["duration"] * 16000)), 16000)
    (folder / "ZED.json").write_text(json.dumps(entries))


ENTRIES = {
    "zed_1": {
        "wav": "datafolder/audio/zed_1.wav",
        "duration": 4.5,
        "emotion": [{"emo": "angry", "start": 1.25, "end": 3.0}],
        "transcription": "I told you twice",
    },
    "zed_2": {
        "wav": "datafolder/audio/zed_2.wav",
        "duration": 2.0,
        "emotion": [{"emo": "happy", "start": 0.0, "end": 2.0}],
    },
}


def test_zed_release_layout_and_reference(tmp_path):
    write_zed(tmp_path / "ZED", ENTRIES)
    first, second = read_zed(tmp_path / "ZED")
    assert (first.id, first.audio, first.duration_s, first.emotion) == (
        "zed_1",
        str(tmp_path / "ZED" / "audio" / "zed_1.wav"),
        4.5,
        "angry",
    )
    assert first.reference_segments() == [(0.0, 1.25, "neutral"), (1.25, 3.0, "angry"), (3.0, 4.5, "neutral")]
    assert second.reference_segments() == [(0.0, 2.0, "happy")]
    assert set(ZED.labels) == {"angry", "happy", "neutral", "sad"}
    # Scored as the recipe does: the whole utterance; predicting all-neutral misses exactly the event.
    result = emotion_diarization_error(first.reference_segments(), [(0.0, 4.5, "neutral")], 0.0, first.duration_s)
    assert result.eder == pytest.approx(1.75 / 4.5)


def test_every_problem_is_listed(tmp_path):
    bad = {
        "two": {"wav": "datafolder/audio/a.wav", "duration": 2, "emotion": [{"emo": "sad", "start": 0, "end": 1}] * 2},
        "late": {"wav": "datafolder/audio/b.wav", "duration": 2, "emotion": [{"emo": "sad", "start": 1, "end": 3}]},
        "odd": {"wav": "datafolder/audio/c.wav", "duration": 2, "emotion": [{"emo": "bored", "start": 0, "end": 1}]},
        "gone": {
            "wav": "datafolder/audio/missing.wav",
            "duration": 1,
            "emotion": [{"emo": "sad", "start": 0, "end": 1}],
        },
    }
    write_zed(tmp_path, {key: entry for key, entry in bad.items() if key != "gone"})
    (tmp_path / "ZED.json").write_text(json.dumps(bad))
    with pytest.raises(CorpusError) as error:
        read_zed(tmp_path)
    message = str(error.value)
    assert "4 problem(s)" in message and "two: ValueError('2 emotion events" in message
    assert "late: event 1.0-3.0 s is not inside" in message and "odd: emotion 'bored'" in message
    assert "gone: audio" in message and "missing.wav does not exist" in message
    with pytest.raises(CorpusError, match="no ZED.json"):
        read_zed(tmp_path / "nowhere")
