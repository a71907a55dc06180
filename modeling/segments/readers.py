"""Segment files → `Segment`s: RTTM (diarization: pyannote, NeMo, DiariZen…), SRT/WebVTT subtitles (Whisper-style
ASR), CSV and JSON (`start,end[,speaker]` in seconds). Every problem of a file is listed at once, each with the file
and its line (`SegmentError`).

Formats, as their sources define them:
- RTTM (NIST Rich Transcription 2009 evaluation plan, appendix A): space-separated
  `SPEAKER <file-id> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>`; only `SPEAKER` lines are turns
  (other types, comments `;;` and blank lines are skipped); turns of several speakers may overlap.
- SRT: numbered cues `HH:MM:SS,mmm --> HH:MM:SS,mmm` then text; hours may be any number of digits.
- WebVTT (W3C): `WEBVTT` header, cues `[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm [settings]`; NOTE/STYLE/REGION blocks
  skipped. The speaker is the cue's voice tag `<v Name>`, or a leading `[Name]` / `Name:` label as WhisperX writes
  (`[SPEAKER_00]: text`).
- CSV: a header with `start`/`start_s`, `end`/`end_s` and optionally `speaker`; BOM and `,;\t|` delimiters accepted
  (the project's one CSV reader, `data/metadata_csv.py`).
- JSON: a list of objects with the same keys, or JSON lines (one object per line).
"""

import json
import os
import re
from pathlib import Path

from ..data.corpus import CorpusError
from ..data.metadata_csv import read_metadata_csv
from ..timeline_recording import Segment, SegmentError, segment_problem


SEGMENT_FORMATS = ("rttm", "srt", "vtt", "csv", "json", "jsonl")

_SRT_TIME = re.compile(r"^\s*(\d+):(\d{2}):(\d{2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{2}):(\d{2})[,.](\d{1,3})")
_VTT_TIME = re.compile(r"^\s*((?:\d+:)?\d{2}:\d{2}\.\d{3})\s+-->\s+((?:\d+:)?\d{2}:\d{2}\.\d{3})(\s.*)?$")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]+)>")
_LABEL = re.compile(r"^\s*\[([^\]]+)\]\s*:?|^\s*([A-Za-z][\w.-]*_\d+)\s*:")


def segment_format(path: str | os.PathLike) -> str:
    """The format of a segment file, from its extension."""
    extension = Path(path).suffix.lower().lstrip(".")
    if extension not in SEGMENT_FORMATS:
        raise SegmentError(f"{path}: unknown segment format {extension!r}; expected one of {SEGMENT_FORMATS}.")
    return extension


def read_segments(path: str | os.PathLike, recording_id: str | None = None) -> list[Segment]:
    """Read a segment file (format from its extension), sorted by start time.

    Args:
        recording_id: for RTTM, the recording whose turns to keep; a line of another recording is an error (an RTTM
            of several recordings is refused unless its id is given: predict.py passes the audio file's stem).
    Raises:
        SegmentError: every bad line of the file, each as `file:line: problem`.
    """
    kind = segment_format(path)
    if not os.path.isfile(path):
        raise SegmentError(f"{path}: segment file does not exist.")
    if kind == "rttm":
        segments = read_rttm(path, recording_id)
    elif kind in ("srt", "vtt"):
        segments = read_subtitles(path)
    elif kind == "csv":
        segments = read_csv(path)
    else:
        segments = read_json(path)
    return sorted(segments, key=lambda s: (s.start_s, s.end_s))


def _checked(problems: list[str], where: str, start: float, end: float, speaker: str | None) -> Segment | None:
    problem = segment_problem(start, end)
    if problem:
        problems.append(f"{where}: {problem}")
        return None
    return Segment(start, end, speaker, where)


def _raise(problems: list[str], path) -> None:
    if problems:
        raise SegmentError(f"{path}: {len(problems)} bad line(s):\n  " + "\n  ".join(problems))


def read_rttm(path: str | os.PathLike, recording_id: str | None = None) -> list[Segment]:
    """RTTM `SPEAKER` lines → segments (onset, onset + duration, speaker name)."""
    segments, problems, ids = [], [], {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";") or fields[0] != "SPEAKER":
                continue
            where = f"{path}:{number}"
            if len(fields) < 8:
                problems.append(f"{where}: a SPEAKER line has 10 fields, got {len(fields)}: {line.strip()!r}")
                continue
            ids.setdefault(fields[1], where)
            if recording_id is not None and fields[1] != recording_id:
                problems.append(f"{where}: recording id {fields[1]!r}, expected {recording_id!r}")
                continue
            try:
                onset, duration = float(fields[3]), float(fields[4])
            except ValueError:
                problems.append(f"{where}: onset and duration must be seconds, got {fields[3]!r} {fields[4]!r}")
                continue
            if duration <= 0:
                problems.append(f"{where}: duration {duration} s: the end is not after the start")
                continue
            segment = _checked(problems, where, onset, round(onset + duration, 6), fields[7])
            if segment:
                segments.append(segment)
    if recording_id is None and len(ids) > 1:
        listed = ", ".join(f"{key!r} (first at {where})" for key, where in ids.items())
        problems.insert(0, f"{path}: turns of {len(ids)} recordings ({listed}); give the recording id to read")
    _raise(problems, path)
    return segments


def _seconds(text: str) -> float:
    parts = text.replace(",", ".").split(":")
    return sum(float(part) * 60**power for power, part in enumerate(reversed(parts)))


def _speaker(lines: list[str]) -> str | None:
    text = " ".join(lines)
    voice = _VOICE.search(text)
    if voice:
        return voice.group(1).strip()
    label = _LABEL.match(text)
    return (label.group(1) or label.group(2)).strip() if label else None


def read_subtitles(path: str | os.PathLike) -> list[Segment]:
    """SRT or WebVTT cues → segments (speaker from a voice tag or a leading speaker label)."""
    vtt = str(path).lower().endswith(".vtt")
    with open(path, encoding="utf-8-sig") as f:
        lines = f.read().splitlines()
    segments, problems = [], []
    if vtt and (not lines or not lines[0].startswith("WEBVTT")):
        problems.append(f"{path}:1: a WebVTT file starts with 'WEBVTT', got {lines[0] if lines else ''!r}")
    number = 0
    while number < len(lines):
        line = lines[number]
        if "-->" not in line:
            number += 1
            continue
        where = f"{path}:{number + 1}"
        text, after = [], number + 1
        while after < len(lines) and lines[after].strip():
            text.append(lines[after])
            after += 1
        if vtt:
            match = _VTT_TIME.match(line)
            times = (_seconds(match.group(1)), _seconds(match.group(2))) if match else None
        else:
            match = _SRT_TIME.match(line)
            times = None
            if match:
                g = [int(x) if i % 4 != 3 else int(x.ljust(3, "0")) for i, x in enumerate(match.groups())]
                times = (g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000, g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000)
        if times is None:
            expected = "[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm" if vtt else "HH:MM:SS,mmm --> HH:MM:SS,mmm"
            problems.append(f"{where}: a cue's times are {expected}, got {line.strip()!r}")
        else:
            segment = _checked(problems, where, round(times[0], 6), round(times[1], 6), _speaker(text))
            if segment:
                segments.append(segment)
        number = after
    _raise(problems, path)
    return segments


def _column(row: dict, *names: str):
    for name in names:
        if name in row and row[name] not in (None, ""):
            return row[name]
    return None


def _from_record(problems, where: str, row: dict) -> Segment | None:
    start, end = _column(row, "start_s", "start"), _column(row, "end_s", "end")
    if start is None or end is None:
        problems.append(f"{where}: needs start (or start_s) and end (or end_s) in seconds, got {dict(row)!r}")
        return None
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        problems.append(f"{where}: start and end must be seconds, got {start!r} and {end!r}")
        return None
    speaker = _column(row, "speaker")
    return _checked(problems, where, start, end, None if speaker is None else str(speaker))


def read_csv(path: str | os.PathLike) -> list[Segment]:
    """CSV rows `start,end[,speaker]` (or `start_s,end_s`) → segments; the line is the spreadsheet's row number."""
    try:
        _, rows = read_metadata_csv(path)
    except CorpusError as error:
        raise SegmentError(str(error)) from None
    segments, problems = [], []
    for number, row in rows:
        segment = _from_record(problems, f"{path}:{number}", row)
        if segment:
            segments.append(segment)
    _raise(problems, path)
    return segments


def read_json(path: str | os.PathLike) -> list[Segment]:
    """A JSON list of objects, or JSON lines, with `start`/`end` (or `start_s`/`end_s`) and optionally `speaker`."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    problems, items = [], []
    try:
        document = json.loads(text)
        if not isinstance(document, list):
            raise SegmentError(
                f"{path}: expected a JSON list of segments (or JSON lines), got {type(document).__name__}."
            )
        items = [(f"{path}: item {index}", item) for index, item in enumerate(document)]
    except json.JSONDecodeError:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: not JSON ({error.msg})")
    segments = []
    for where, item in items:
        if not isinstance(item, dict):
            problems.append(f"{where}: expected an object with start and end, got {item!r}")
            continue
        segment = _from_record(problems, where, item)
        if segment:
            segments.append(segment)
    _raise(problems, path)
    return segments
