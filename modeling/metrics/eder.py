"""Emotion Diarization Error Rate (EDER): which emotion appears when, scored against reference emotion segments.

Wang et al. 2023, "Speech Emotion Diarization: Which Emotion Appears When?" (arXiv 2306.12991), define
EDER = (false alarm + missed emotion + emotion confusion) / reference duration, like the diarization error rate but
without a speaker mapping (emotions are the same classes on both sides):

- missed emotion (ME): reference emotion where the hypothesis has none (a gap in the hypothesis);
- false alarm (FA): hypothesis emotion where the reference has none (silence between utterances; outside the
  scored region nothing counts);
- confusion (CF): both present, different emotions.

Overlaps are counted as in the DER: where r reference and h hypothesis segments are active, ME = max(0, r − h),
FA = max(0, h − r), CF = min(r, h) − matches (multiset intersection of the emotions), all × the duration; the
denominator is Σ r × duration. For references that cover the whole utterance with one emotion at a time (ZED: neutral
before and after the emotion event) and non-overlapping hypotheses this equals SpeechBrain's
`speechbrain.utils.EDER.EDER` (1 − correctly labelled duration / utterance duration); frame-wise predictions with
overlapping windows become segments with `frame_segments` (SpeechBrain's merging and equal split of overlaps).
`tests/metrics/test_eder.py` checks both against SpeechBrain 1.1.2 on seeded random segmentations.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EmotionDiarizationError:
    """The parts of the EDER, in seconds; `eder` is their sum over `reference_s` (0 when there is no reference).
    Adding two results pools them (the corpus-level EDER: total errors over total reference duration)."""

    false_alarm_s: float
    missed_emotion_s: float
    confusion_s: float
    reference_s: float

    @property
    def eder(self) -> float:
        errors = self.false_alarm_s + self.missed_emotion_s + self.confusion_s
        if self.reference_s <= 0:
            return 0.0 if errors <= 0 else float("inf")
        return errors / self.reference_s

    def __add__(self, other: "EmotionDiarizationError") -> "EmotionDiarizationError":
        return EmotionDiarizationError(
            self.false_alarm_s + other.false_alarm_s,
            self.missed_emotion_s + other.missed_emotion_s,
            self.confusion_s + other.confusion_s,
            self.reference_s + other.reference_s,
        )


def _triples(segments: Iterable, label_keys: Sequence[str]) -> list[tuple[float, float, str]]:
    """(start, end, emotion) from tuples or mappings (`start_s`/`start`, `end_s`/`end`, the first of label_keys)."""
    triples = []
    for item in segments:
        if isinstance(item, Mapping):
            start = item["start_s"] if "start_s" in item else item["start"]
            end = item["end_s"] if "end_s" in item else item["end"]
            emotion = next(item[key] for key in label_keys if key in item)
        else:
            start, end, emotion = item
        if end < start:
            raise ValueError(f"segment ({start}, {end}, {emotion!r}): end before start.")
        triples.append((float(start), float(end), str(emotion)))
    return triples


def emotion_diarization_error(
    reference: Iterable,
    hypothesis: Iterable,
    start_s: float = 0.0,
    end_s: float | None = None,
) -> EmotionDiarizationError:
    """Score hypothesis emotion segments against reference ones over [start_s, end_s].

    Args:
        reference: (start_s, end_s, emotion) tuples, or mappings with `start_s`/`end_s` (or `start`/`end`) and
            `label` (or `emotion`, `predicted`); may overlap (several speakers) and leave gaps (no emotion).
        hypothesis: the same, e.g. the pipeline's `timeline` (mappings with `start_s`, `end_s`, `predicted`).
        start_s, end_s: the scored region in seconds (default: 0 to the reference's end).
    Returns:
        `EmotionDiarizationError` (`.eder`, and FA / ME / CF / reference seconds).
    """
    reference = _triples(reference, ("label", "emotion", "predicted"))
    hypothesis = _triples(hypothesis, ("predicted", "emotion", "label"))
    if end_s is None:
        end_s = max((end for _, end, _ in reference), default=start_s)
    events = []  # (time, side, +1/-1, emotion): a sweep over all boundaries inside the region
    for side, segments in ((0, reference), (1, hypothesis)):
        for start, end, emotion in segments:
            start, end = max(start, start_s), min(end, end_s)
            if end > start:
                events += [(start, side, 1, emotion), (end, side, -1, emotion)]
    events.sort(key=lambda event: event[0])
    active = (Counter(), Counter())
    false_alarm = missed = confusion = total = 0.0
    previous = start_s
    for time, side, change, emotion in events:
        if time > previous:
            span = time - previous
            r, h = sum(active[0].values()), sum(active[1].values())
            matches = sum(min(count, active[1][emotion_]) for emotion_, count in active[0].items())
            missed += max(0, r - h) * span
            false_alarm += max(0, h - r) * span
            confusion += (min(r, h) - matches) * span
            total += r * span
            previous = time
        active[side][emotion] += change
    return EmotionDiarizationError(false_alarm, missed, confusion, total)


def frame_segments(labels: Sequence[str], window_length_s: float, stride_s: float) -> list[tuple[float, float, str]]:
    """Frame-wise predictions → hypothesis segments, as SpeechBrain's EDER prepares them: frame i covers
    [i·stride, i·stride + window_length]; consecutive frames of one emotion that touch or overlap are merged; where
    consecutive segments of different emotions overlap, the overlap is split equally between them. (Non-adjacent
    segments overlap only when window_length > 2·stride; they are then counted as overlaps, which SpeechBrain
    counts twice as correct.)"""
    merged: list[list] = []
    for i, label in enumerate(labels):
        start, end = i * stride_s, i * stride_s + window_length_s
        if merged and merged[-1][2] == label and start <= merged[-1][1]:
            merged[-1][1] = end
        else:
            merged.append([start, end, label])
    for left, right in zip(merged, merged[1:]):
        if left[1] > right[0]:
            middle = right[0] + (left[1] - right[0]) / 2.0
            left[1], right[0] = middle, middle
    return [(start, end, label) for start, end, label in merged]


__all__ = ["EmotionDiarizationError", "emotion_diarization_error", "frame_segments"]
