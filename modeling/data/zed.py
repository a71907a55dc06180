"""ZED (Zaion Emotion Dataset): the test set of speech emotion diarization, read as SpeechBrain's recipe reads it.

Sources: Wang et al. 2023, "Speech Emotion Diarization: Which Emotion Appears When?" (arXiv 2306.12991); SpeechBrain's
`recipes/ZaionEmotionDataset/emotion_diarization/zed_prepare.py` (`prepare_test`), which defines the release layout:

    ZED/ZED.json     {"<id>": {"wav": "datafolder/<...>.wav", "duration": seconds,
                               "emotion": [{"emo": "angry"|"happy"|"sad", "start": s, "end": e}],
                               "transcription": "..."}, ...}
    ZED/<...>.wav    the audio; "datafolder" in "wav" stands for the ZED folder itself.

Each utterance holds ONE non-neutral emotion event in neutral speech; the recipe asserts it (`get_labels`), so the
reference is neutral before the event, the event, neutral after (`reference_segments`), scored with EDER over the
whole utterance (`modeling.metrics.eder`). ZED is an evaluation set (no folds, no training); it is not registered in
the loader catalog. The data are not redistributed here: download them from Zaion
(https://zaion.ai/en/resources/zaion-lab-blog/zaion-emotion-dataset/).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from .corpus import CorpusError, CorpusInfo


ZED = CorpusInfo(
    name="zed",
    title="ZED, Zaion Emotion Dataset (English, emotion events with boundaries inside neutral speech)",
    labels=("angry", "happy", "neutral", "sad"),
    license="cc-by-nc-4.0",
    terms="ZED is distributed by Zaion for non-commercial research (CC BY-NC 4.0); it is not redistributed here.",
    citation="Wang, Y., Ravanelli, M., & Yacoubi, A. (2023). Speech Emotion Diarization: Which Emotion Appears "
    "When? Proc. ASRU 2023. arXiv:2306.12991.",
    language="en",
    loader="zed",
    folds="predefined",
)
NEUTRAL = "neutral"
EVENT_EMOTIONS = ("angry", "happy", "sad")


@dataclass(frozen=True)
class ZedUtterance:
    """One ZED utterance: its audio, duration and emotion event (seconds)."""

    id: str
    audio: str
    duration_s: float
    emotion: str
    start_s: float
    end_s: float
    transcription: str = ""

    def reference_segments(self) -> list[tuple[float, float, str]]:
        """neutral [0, start), the event [start, end), neutral [end, duration): SpeechBrain's `reference_to_lol`."""
        segments = [(0.0, self.start_s, NEUTRAL)] if self.start_s > 0 else []
        segments.append((self.start_s, self.end_s, self.emotion))
        if self.end_s < self.duration_s:
            segments.append((self.end_s, self.duration_s, NEUTRAL))
        return segments


def read_zed(folder: str | Path, check_audio: bool = True) -> list[ZedUtterance]:
    """ZED.json of a ZED folder → utterances, every problem listed at once (`CorpusError`): a missing ZED.json,
    an entry without wav/duration/emotion, not exactly one event, an unknown emotion, an event outside the
    utterance or ending before it starts, a missing audio file (`check_audio`)."""
    folder = Path(folder)
    index = folder / "ZED.json"
    if not index.is_file():
        raise CorpusError(f"{folder}: no ZED.json; expected the ZED release (ZED.json and the audio files).")
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CorpusError(f"{index}: not JSON ({error.msg} at line {error.lineno}).") from None
    utterances, problems = [], []
    for key, entry in entries.items():
        where = f"{index}: {key}"
        try:
            events = entry["emotion"]
            if len(events) != 1:
                raise ValueError(f"{len(events)} emotion events; ZED has exactly one per utterance")
            event = events[0]
            audio = Path(str(entry["wav"]).replace("datafolder", str(folder), 1))
            utterance = ZedUtterance(
                key,
                str(audio),
                float(entry["duration"]),
                str(event["emo"]).lower(),
                float(event["start"]),
                float(event["end"]),
                entry.get("transcription", ""),
            )
        except (KeyError, TypeError, ValueError) as error:
            problems.append(f"{where}: {error!r} (expected wav, duration and emotion: [{{emo, start, end}}])")
            continue
        if utterance.emotion not in EVENT_EMOTIONS:
            problems.append(f"{where}: emotion {utterance.emotion!r}, expected one of {EVENT_EMOTIONS}")
        if not (0 <= utterance.start_s < utterance.end_s <= utterance.duration_s + 1e-6):
            problems.append(
                f"{where}: event {utterance.start_s}-{utterance.end_s} s is not inside the utterance "
                f"(0-{utterance.duration_s} s) with its end after its start"
            )
        if not math.isfinite(utterance.duration_s) or utterance.duration_s <= 0:
            problems.append(f"{where}: duration {utterance.duration_s}")
        if check_audio and not audio.is_file():
            problems.append(f"{where}: audio {audio} does not exist")
        utterances.append(utterance)
    if problems:
        raise CorpusError(f"{len(problems)} problem(s) in {index}:\n" + "\n".join(f"  - {p}" for p in problems))
    return utterances
