"""Long recordings, segment by segment, for predict.py (`--segments auto|FOLDER`, `--vad`) and the timeline command.

Where each recording's segments come from (`SegmentSource`):
    a segment file named like the recording (`call.wav` → `call.rttm` / `.srt` / `.vtt` / `.csv` / `.json` /
    `.jsonl`), beside it (`auto`) or in a folder; an RTTM must hold the recording's id (the audio file's stem);
    the voice-activity detector (`--vad`): for every recording, or (with a segment folder) for those without a file.
Each recording gives its duration and its per-segment records one at a time (`pipeline.iter_segments`); the audio is
read one segment at a time and the records are written as they come (`batch.JobOutputs.write_recording`).
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..prediction_fields import PREDICTED, probability_fields
from ..segments import SEGMENT_FORMATS, SegmentError, read_segments
from ..segments.vad import VadSettings, detect_speech
from ..segments.writers import format_probability, format_seconds, rounded
from ..timeline_recording import Segment, recording_duration


SEGMENT_COLUMNS = ["start_s", "end_s", "speaker"]
NO_SPEECH = "no speech found by the voice-activity detector (empty result)"


class NoSegments(SegmentError):
    """A recording whose segments are none (no speech, an empty segment file)."""


@dataclass(frozen=True)
class SegmentSource:
    """Where the segments of each recording come from: `folder` ("auto": beside the audio; None: no files) and/or
    the VAD (`vad`), with silero-vad's settings."""

    folder: str | None = None
    vad: bool = False
    vad_settings: VadSettings = field(default_factory=VadSettings)

    def __post_init__(self):
        if self.folder is None and not self.vad:
            raise ValueError("segments need a segment folder ('auto' or a path) or the voice-activity detector")
        if self.folder not in (None, "auto") and not os.path.isdir(self.folder):
            raise SegmentError(f"{self.folder}: the segment folder does not exist.")

    def segment_file(self, audio_path: str) -> str | None:
        """The segment file of a recording, or None; several candidates are an error (which one is meant?)."""
        if self.folder is None:
            return None
        folder = Path(audio_path).parent if self.folder == "auto" else Path(self.folder)
        stem = Path(audio_path).stem
        found = [str(folder / f"{stem}.{ext}") for ext in SEGMENT_FORMATS if (folder / f"{stem}.{ext}").is_file()]
        if len(found) > 1:
            raise SegmentError(f"{audio_path}: several segment files ({', '.join(found)}); keep one.")
        return found[0] if found else None

    def segments_for(self, audio_path: str) -> list[Segment]:
        path = self.segment_file(audio_path)
        if path is not None:
            return read_segments(path, recording_id=Path(audio_path).stem)
        if not self.vad:
            where = Path(audio_path).parent if self.folder == "auto" else self.folder
            names = "/".join(SEGMENT_FORMATS)
            raise SegmentError(f"no segment file {Path(audio_path).stem}.{{{names}}} in {where} (or use --vad).")
        return detect_speech(audio_path, self.vad_settings)


def predict_recording(pipe, audio_path: str, source: SegmentSource, pipeline_kwargs: dict | None = None):
    """One recording → (duration in seconds, an iterator of its per-segment records, one at a time: consume it as it
    comes to keep memory flat); `NoSegments` (at once) when there are none."""
    segments = source.segments_for(audio_path)
    if not segments:
        raise NoSegments(NO_SPEECH if source.vad else f"{audio_path}: the segment file lists no segments.")
    duration = recording_duration(audio_path, pipe.sampling_rate, audio_path)
    return duration, pipe.iter_segments(audio_path, segments, **(pipeline_kwargs or {}))


def segment_row(file: str, record: dict, labels: list[str]) -> list[str]:
    """predict.py's row of one segment: file, start_s, end_s, speaker, predicted, prob_<class>... (numbers written
    by `segments.writers`: times to the millisecond, probabilities to 6 decimals)."""
    return [
        file,
        format_seconds(record["start_s"]),
        format_seconds(record["end_s"]),
        record["speaker"] or "",
        record[PREDICTED],
    ] + [format_probability(record[name]) for name in probability_fields(labels)]


def segment_record(record: dict, labels: list[str]) -> dict:
    """A segment result for JSON lines: times, speaker, prediction and the timeline inside it (no window list),
    rounded as `segments.writers.rounded` does."""
    keys = ["start_s", "end_s", "speaker", PREDICTED, *probability_fields(labels), "timeline"]
    return rounded({key: record[key] for key in keys})
