"""Per-segment emotion results → files: CSV, JSON lines, RTTM (emotion as the label), SRT and WebVTT (emotion in the
caption). The format follows the extension (`write_segment_results`, `SegmentResultWriter`); every writer is atomic (a
crash never leaves half a file) and streams: each record is written as it comes, so memory does not grow with the
number of segments.

A result record is what `pipeline(audio, segments=...)` returns per segment: `start_s`, `end_s`, `speaker`,
`predicted`, `prob_<class>`..., and `timeline` (the frame timeline inside the segment, in recording seconds).

This module is the one owner of how numbers are written into result files (here, predict.py's CSV and JSON lines):
times in seconds to the millisecond (`format_seconds`: "0.300", never "0.30000000000000004"), probabilities to 6
decimals (`format_probability`), and `rounded(record)` for JSON (the same rounding, as numbers).
"""

import contextlib
import csv
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from ..prediction_fields import PREDICTED, probability_field
from ..rundir.atomic import atomic_file


RESULT_FORMATS = ("csv", "jsonl", "rttm", "srt", "vtt")
SEGMENT_COLUMNS = ("start_s", "end_s", "speaker")
TIME_DECIMALS = 3  # milliseconds: finer than any segment boundary (RTTM, SRT/VTT and the 20 ms frames)
PROBABILITY_DECIMALS = 6
SIGNIFICANT_DIGITS = 6  # frame weights α: small numbers (1 / frames), kept to 6 significant digits


def format_seconds(seconds: float) -> str:
    """A time in seconds as written in result files: "0.300" (millisecond precision)."""
    return f"{seconds:.{TIME_DECIMALS}f}"


def format_probability(probability: float) -> str:
    """A probability as written in result files: "0.123457" (6 decimals)."""
    return f"{probability:.{PROBABILITY_DECIMALS}f}"


def _is_time(key: str) -> bool:
    return key.endswith("_s")


def rounded(value, key: str = ""):
    """A record (dict, list, number; nested) with its numbers rounded as in `format_seconds` (keys `*_s`,
    `duration`) and `format_probability` (`prob_*`, `share`), other floats (`weight`) to 6 significant digits;
    numpy scalars become Python numbers. For JSON files: `0.1 + 0.2` is written 0.3."""
    if isinstance(value, dict):
        return {name: rounded(item, name) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(item, key) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if hasattr(value, "item") and not isinstance(value, (int, float)):  # numpy scalar
        value = value.item()
    if isinstance(value, int):
        return value
    value = float(value)
    if not math.isfinite(value):
        return value
    if _is_time(key):
        return round(value, TIME_DECIMALS)
    if key.startswith("prob_") or key == "share":
        return round(value, PROBABILITY_DECIMALS)
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}")


def result_format(path: str | os.PathLike) -> str:
    extension = Path(path).suffix.lower().lstrip(".")
    if extension not in RESULT_FORMATS:
        raise ValueError(f"{path}: cannot write segment results as {extension!r}; expected one of {RESULT_FORMATS}.")
    return extension


class SegmentResultWriter:
    """Writes per-segment results to one file, record by record (`write`), in the format of the path's extension.

    The text goes to a temporary file beside `path` that replaces it when the writer closes without an error
    (`rundir.atomic.atomic_file`); on an exception `path` is left as it was. Use as a context manager:

        with SegmentResultWriter("call.emotions.srt", classes, "call") as out:
            for record in pipe.iter_segments("call.wav", segments):
                out.write(record)
    """

    def __init__(self, path: str | os.PathLike, classes: list[str], recording_id: str):
        self.path, self.kind = Path(path), result_format(path)
        self.classes, self.recording_id = list(classes), recording_id
        self.count = 0
        self._stack = contextlib.ExitStack()
        self._file = None

    def __enter__(self) -> "SegmentResultWriter":
        self._file = self._stack.enter_context(atomic_file(self.path))
        if self.kind == "csv":
            self._csv = csv.writer(self._file, lineterminator="\n")
            self._csv.writerow(self._columns())
        elif self.kind == "vtt":
            self._file.write("WEBVTT\n")
        return self

    def __exit__(self, *exc_info) -> bool:
        return self._stack.__exit__(*exc_info)

    def _columns(self) -> list[str]:
        return [*SEGMENT_COLUMNS, PREDICTED, *(probability_field(c) for c in self.classes)]

    def write(self, record: dict) -> None:
        """Append one segment's result."""
        self.count += 1
        if self.kind == "csv":
            self._csv.writerow(csv_row(record, self.classes))
        elif self.kind == "jsonl":
            self._file.write(json.dumps(rounded({"recording": self.recording_id, **record}), ensure_ascii=False))
            self._file.write("\n")
        elif self.kind == "rttm":
            self._file.write(rttm_line(record, self.recording_id))
        else:
            # SRT: cues separated by a blank line; WebVTT: a blank line after the header and after every cue.
            separator = "" if self.kind == "srt" and self.count == 1 else "\n"
            self._file.write(separator + subtitle_cue(record, self.count, vtt=self.kind == "vtt"))


def write_segment_results(
    path: str | os.PathLike, records: Iterable[dict], classes: list[str], recording_id: str
) -> int:
    """Write per-segment results (any iterable: written as they come) in the format of `path`'s extension (see
    `RESULT_FORMATS`). Returns the number of records written."""
    with SegmentResultWriter(path, classes, recording_id) as out:
        for record in records:
            out.write(record)
    return out.count


def csv_row(record: dict, classes: list[str]) -> list[str]:
    """start_s, end_s, speaker, predicted, prob_<class>... (no nested timeline)."""
    return [
        format_seconds(record["start_s"]),
        format_seconds(record["end_s"]),
        record.get("speaker") or "",
        record[PREDICTED],
        *(format_probability(record[probability_field(c)]) for c in classes),
    ]


def rttm_line(r: dict, recording_id: str) -> str:
    """An RTTM SPEAKER line whose name field is the predicted emotion and whose confidence field is its probability;
    the speaker label goes in the orthography field (6th), so nothing is lost (pyannote reads only the name)."""
    duration = r["end_s"] - r["start_s"]
    confidence = r[probability_field(r[PREDICTED])]
    speaker = (r.get("speaker") or "<NA>").replace(" ", "_")
    return (
        f"SPEAKER {recording_id} 1 {format_seconds(r['start_s'])} {format_seconds(duration)} {speaker} <NA> "
        f"{r[PREDICTED]} {confidence:.4f} <NA>\n"
    )


def _timestamp(seconds: float, vtt: bool) -> str:
    milliseconds = int(round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{'.' if vtt else ','}{fraction:03d}"


def subtitle_cue(r: dict, index: int, vtt: bool) -> str:
    """One SRT or WebVTT cue, captioned `[speaker] emotion (probability)` (a VTT voice tag for the speaker)."""
    times = f"{_timestamp(r['start_s'], vtt)} --> {_timestamp(r['end_s'], vtt)}"
    caption = f"{r[PREDICTED]} ({r[probability_field(r[PREDICTED])]:.2f})"
    speaker = r.get("speaker")
    if speaker:
        caption = f"<v {speaker}>{caption}" if vtt else f"[{speaker}] {caption}"
    return f"{index}\n{times}\n{caption}\n"
