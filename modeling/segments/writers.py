"""Per-segment emotion results → files: CSV, JSON lines, RTTM (emotion as the label), SRT and WebVTT (emotion in the
caption). The format follows the extension (`write_segment_results`); every writer is atomic (a crash never leaves
half a file).

A result record is what `pipeline(audio, segments=...)` returns per segment: `start_s`, `end_s`, `speaker`,
`predicted`, `prob_<class>`..., and `timeline` (the frame timeline inside the segment, in recording seconds).
"""

import csv
import io
import json
import os
from pathlib import Path

from ..prediction_fields import PREDICTED, probability_field
from ..rundir.atomic import atomic_write_text


RESULT_FORMATS = ("csv", "jsonl", "rttm", "srt", "vtt")
SEGMENT_COLUMNS = ("start_s", "end_s", "speaker")


def result_format(path: str | os.PathLike) -> str:
    extension = Path(path).suffix.lower().lstrip(".")
    if extension not in RESULT_FORMATS:
        raise ValueError(f"{path}: cannot write segment results as {extension!r}; expected one of {RESULT_FORMATS}.")
    return extension


def write_segment_results(path: str | os.PathLike, records: list[dict], classes: list[str], recording_id: str) -> None:
    """Write per-segment results in the format of `path`'s extension (see `RESULT_FORMATS`)."""
    kind = result_format(path)
    text = {
        "csv": lambda: results_csv(records, classes),
        "jsonl": lambda: results_jsonl(records, recording_id),
        "rttm": lambda: results_rttm(records, recording_id),
        "srt": lambda: results_subtitles(records, vtt=False),
        "vtt": lambda: results_subtitles(records, vtt=True),
    }[kind]()
    atomic_write_text(path, text)


def results_csv(records: list[dict], classes: list[str]) -> str:
    """One row per segment: start_s, end_s, speaker, predicted, prob_<class>... (no nested timeline)."""
    columns = [*SEGMENT_COLUMNS, PREDICTED, *(probability_field(c) for c in classes)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({**record, "speaker": record.get("speaker") or ""})
    return buffer.getvalue()


def results_jsonl(records: list[dict], recording_id: str) -> str:
    """One JSON object per segment, with its frame timeline."""
    return "".join(json.dumps({"recording": recording_id, **r}, ensure_ascii=False) + "\n" for r in records)


def results_rttm(records: list[dict], recording_id: str) -> str:
    """RTTM SPEAKER lines whose name field is the predicted emotion and whose confidence field is its probability;
    the speaker label goes in the orthography field (6th), so nothing is lost (pyannote reads only the name)."""
    lines = []
    for r in records:
        duration = r["end_s"] - r["start_s"]
        confidence = r[probability_field(r[PREDICTED])]
        speaker = (r.get("speaker") or "<NA>").replace(" ", "_")
        lines.append(
            f"SPEAKER {recording_id} 1 {r['start_s']:.3f} {duration:.3f} {speaker} <NA> {r[PREDICTED]} "
            f"{confidence:.4f} <NA>\n"
        )
    return "".join(lines)


def _timestamp(seconds: float, vtt: bool) -> str:
    milliseconds = int(round(seconds * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{'.' if vtt else ','}{fraction:03d}"


def results_subtitles(records: list[dict], vtt: bool) -> str:
    """SRT or WebVTT cues, one per segment, captioned `[speaker] emotion (probability)` (a VTT voice tag for the
    speaker)."""
    blocks = ["WEBVTT\n"] if vtt else []
    for index, r in enumerate(records, 1):
        times = f"{_timestamp(r['start_s'], vtt)} --> {_timestamp(r['end_s'], vtt)}"
        caption = f"{r[PREDICTED]} ({r[probability_field(r[PREDICTED])]:.2f})"
        speaker = r.get("speaker")
        if speaker:
            caption = f"<v {speaker}>{caption}" if vtt else f"[{speaker}] {caption}"
        blocks.append(f"{index}\n{times}\n{caption}\n")
    return "\n".join(blocks)
