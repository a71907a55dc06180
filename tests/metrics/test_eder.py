"""modeling/metrics/eder.py: EDER equals SpeechBrain's implementation (`speechbrain.utils.EDER`, 1.1.2) on 30 seeded
random segmentations (gaps and overlaps between frames, hypotheses past the end, events at the edges) and on hand
computations (empty hypotheses, overlapping references, silences).

The reference values are committed (`eder_speechbrain_cases.json`, written by `python tests/metrics/test_eder.py`
with SpeechBrain installed), because `pip install speechbrain` pulls a torchaudio wheel that breaks
`import transformers` on CPU torch (../shared/docs/ecosystem-notes.md); where speechbrain is installed, its EDER.py is
loaded by path (it imports nothing) and recomputes every value live.
"""

import importlib.util
import json
import random
from pathlib import Path

import pytest

from modeling.metrics.eder import EmotionDiarizationError, emotion_diarization_error, frame_segments


CASES = Path(__file__).with_name("eder_speechbrain_cases.json")
EMOTIONS = {"a": "angry", "h": "happy", "s": "sad"}


def speechbrain_eder():
    """SpeechBrain's EDER function, loaded from its file (importing the package needs torchaudio), or None."""
    spec = importlib.util.find_spec("speechbrain")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "EDER.py"
    module_spec = importlib.util.spec_from_file_location("speechbrain_eder_reference", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.EDER


def random_case(rng: random.Random) -> dict:
    """One utterance: an emotion event inside neutral speech, frame-wise predictions with random runs."""
    duration = round(rng.uniform(1.0, 8.0), 3)
    start = rng.choice([0.0, round(rng.uniform(0, duration * 0.6), 3)])
    end = rng.choice([duration, round(rng.uniform(start + 0.05, duration), 3)])
    stride = rng.choice([0.02, 0.1, 0.2, 0.25])
    window = round(stride * rng.choice([0.5, 0.8, 1.0, 1.5, 2.0]), 4)  # gaps (< stride) and overlaps (> stride)
    frames = max(1, int(duration / stride * rng.uniform(0.6, 1.3)))  # short of the end, or past it
    predictions, label = [], rng.choice("nahs")
    while len(predictions) < frames:
        predictions += [label] * rng.randint(1, 8)
        label = rng.choice("nahs")
    emo = EMOTIONS[rng.choice("ahs")]
    return {
        "duration": duration,
        "emotion": [{"emo": emo, "start": start, "end": end}],
        "prediction": "".join(predictions[:frames]),  # one letter per frame, as SpeechBrain compares emo[0]
        "window_length": window,
        "stride": stride,
    }


def ours(case: dict) -> float:
    event = case["emotion"][0]
    reference = [(0.0, event["start"], "n"), (event["start"], event["end"], event["emo"][0])]
    reference.append((event["end"], case["duration"], "n"))
    hypothesis = frame_segments(list(case["prediction"]), case["window_length"], case["stride"])
    return emotion_diarization_error(reference, hypothesis, 0.0, case["duration"]).eder


def call(eder, case: dict) -> float:
    return eder(
        list(case["prediction"]), "utt", case["duration"], case["emotion"], case["window_length"], case["stride"]
    )


def write_cases(count: int = 30) -> None:
    eder = speechbrain_eder()
    rng = random.Random(22)
    cases = [random_case(rng) for _ in range(count)]
    for case in cases:
        case["speechbrain_eder"] = call(eder, case)
    CASES.write_text(json.dumps(cases, indent=1) + "\n")


def test_eder_equals_speechbrain_on_random_segmentations():
    cases = json.loads(CASES.read_text())
    assert len(cases) >= 20
    assert {case["window_length"] < case["stride"] for case in cases} == {True, False}  # gaps and overlaps
    for case in cases:
        assert ours(case) == pytest.approx(case["speechbrain_eder"], abs=1e-9), case
    values = sorted(case["speechbrain_eder"] for case in cases)
    assert values[0] < 0.5 and sum(value < 1.0 for value in values) >= 20  # mostly partly right: informative


def test_committed_values_are_speechbrains():
    eder = speechbrain_eder()
    if eder is None:
        pytest.skip("speechbrain not installed: the committed values stand in for it")
    for case in json.loads(CASES.read_text()):
        live = call(eder, case)
        assert live == pytest.approx(case["speechbrain_eder"], abs=1e-12)


def test_hand_computed_cases():
    reference = [(0, 4, "neutral"), (4, 6, "angry"), (6, 10, "neutral")]
    # Empty hypothesis: everything missed (SpeechBrain's EDER raises IndexError on an empty prediction list).
    assert emotion_diarization_error(reference, []) == EmotionDiarizationError(0.0, 10.0, 0.0, 10.0)
    assert emotion_diarization_error(reference, []).eder == 1.0
    # A timeline as the pipeline gives it: 1 s of confusion (3-4 angry), 1 s missed (9-10 no segment).
    timeline = [{"start": 0, "end": 3, "predicted": "neutral"}, {"start": 3, "end": 6, "predicted": "angry"}]
    timeline.append({"start": 6, "end": 9, "predicted": "neutral"})
    result = emotion_diarization_error(reference, timeline)
    assert (result.confusion_s, result.missed_emotion_s, result.false_alarm_s, result.eder) == (1, 1, 0, 0.2)
    # Silence between two utterances (no reference): a hypothesis there is a false alarm.
    reference = [(0, 2, "sad"), (3, 5, "happy")]
    result = emotion_diarization_error(reference, [(0, 5, "sad")])
    assert (result.false_alarm_s, result.confusion_s, result.reference_s) == (1, 2, 4) and result.eder == 0.75
    # Overlapping reference turns (two speakers, 1-2 s): one hypothesis covers one of them; the other is missed.
    reference = [(0, 2, "sad", "A"), (1, 3, "happy", "B")]
    result = emotion_diarization_error([r[:3] for r in reference], [(0, 3, "happy")])
    assert (result.missed_emotion_s, result.confusion_s, result.reference_s) == (1, 1, 4)
    # Pooling: total errors over total reference.
    assert (result + result).eder == result.eder == 0.5


def test_frame_segments_merge_and_split_overlaps():
    assert frame_segments(["n", "n", "a", "a", "n"], 0.3, 0.2) == [
        (0.0, pytest.approx(0.45), "n"),
        (pytest.approx(0.45), pytest.approx(0.85), "a"),
        (pytest.approx(0.85), pytest.approx(1.1), "n"),
    ]
    assert frame_segments(["n", "n"], 0.1, 0.2) == [(0.0, 0.1, "n"), (0.2, pytest.approx(0.3), "n")]  # gap kept
    assert frame_segments([], 0.2, 0.2) == []


if __name__ == "__main__":
    write_cases()
