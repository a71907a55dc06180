"""The batch prediction job: thousands of files → one CSV, resumable, never lost to one bad file.

```python
from modeling.inference import load_pipeline
from modeling.inference.batch import collect_inputs, predict_files
pipe = load_pipeline("runs/demo/fold1/stage2/best", backend="onnx")
summary = predict_files(pipe, collect_inputs(["archive/"]), "predictions.csv", timeline_path="timeline.jsonl")
```

Outputs (all appended batch by batch; one `os.write` per file per batch, fsynced):
    predictions CSV   `file, duration_s, predicted, prob_<class>...` (the predicted class, then one probability
                      column per class in the model's label order: `modeling.prediction_fields`), one row per good
                      file. There is no `label` column: that name is the true class, unknown here.
    `<output>.errors.csv` (or `errors_path`)   `file, error`: files that could not be read, with the reason.
    timeline JSON lines (optional)   one `{"file", "duration_s", "predicted", "timeline": [segments]}` per good file.

Resume: a re-run with the same output skips every file already in the predictions CSV (and, unless
`retry_errors`, those listed as errors). A kill can at worst leave a partial last line (the process died inside a
write): it is cut off on restart, and timeline lines of files missing from the CSV are dropped, so every file ends up
exactly once in each output. Memory holds one write group of results and at most `batch_size` decoded clips (a long
file is streamed window by window by the pipeline), whatever the number of files. In long-recording mode
(`segments=`) a recording's segments are written as they come (spooled on disk, then appended together): memory
holds `batch_size` segments, whatever the recording's length.
"""

import csv
import glob
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..audio import AUDIO_EXTENSIONS, AudioInputError, audio_duration
from ..data.corpus import CorpusError
from ..data.metadata_csv import FILE_COLUMNS, PATH_COLUMNS, listed_path, read_metadata_csv
from ..data.problems import CheckError, Problem
from ..prediction_fields import PREDICTED, probability_fields
from ..rundir.atomic import atomic_write_text
from ..rundir.faults import FaultInjected, fault_point
from ..rundir.reader import close_names_hint
from ..segments.writers import format_probability, format_seconds, rounded
from .job_record import open_record, pipeline_settings
from .output_files import append_bytes, csv_text, repair_partial_line, spool_parts
from .recordings import SEGMENT_COLUMNS, NoSegments, SegmentSource, predict_recording, segment_record, segment_row


CSV_PATH_COLUMNS = (*FILE_COLUMNS, *PATH_COLUMNS)
ERROR_COLUMNS = ["file", "error"]


class BatchJobError(CheckError):
    """The job cannot start (bad inputs, an output written by another model): every problem, grouped by cause."""

    def __init__(self, problems, source: str = "", hint: str = "", outcome: str = "nothing written"):
        super().__init__(problems, source, hint, outcome)


# ----------------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------------


def _csv_paths(csv_path: Path, path_column: str | None) -> list[str]:
    """The audio paths listed in a CSV, read as train.py reads `metadata.csv` (`data.metadata_csv`: BOM, `;`/tab/`|`,
    CRLF; relative paths are relative to the CSV's folder)."""
    try:
        columns, rows = read_metadata_csv(csv_path)
    except CorpusError as error:
        raise BatchJobError([Problem(str(csv_path), str(error), cause="unreadable CSV")]) from None
    candidates = [path_column] if path_column else list(CSV_PATH_COLUMNS)
    column = next((name for name in candidates if name in columns), None)
    if column is None:
        message = f"{csv_path}: row 1: no column {' / '.join(candidates)} with audio paths; columns: {columns}"
        raise BatchJobError([Problem(str(csv_path), message, cause="CSV without a path column")])
    empty = [number for number, row in rows if not row[column]]
    if empty:
        message = f"{csv_path}: row(s) {empty[:10]}: empty '{column}'"
        raise BatchJobError([Problem(str(csv_path), message, cause="CSV rows without a path")])
    return [listed_path(csv_path, row[column]) for _, row in rows]


def _folder_paths(folder: Path) -> list[str]:
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths += [os.path.join(root, name) for name in sorted(files) if name.lower().endswith(AUDIO_EXTENSIONS)]
    return paths


def missing_input_problem(path: str) -> Problem:
    """A command-line input path that does not exist: "audi: no such file or folder. Did you mean audio?" (the
    closest existing names, `rundir.reader.close_names_hint`); blocking (an argument mistake, not a failed file)."""
    hint = close_names_hint(path)
    return Problem(path, f"{path}: no such file or folder" + (f". {hint}" if hint else ""), cause="no such input")


def collect_inputs(sources: list[str], path_column: str | None = None) -> list[str]:
    """Folders (searched recursively for audio extensions), glob patterns (`**` recursive), CSV files (a
    `file`/`file_name`/`path`/`audio` column, or `path_column`; read as train.py reads `metadata.csv`) and single
    files → the audio paths, in order, each once.

    Raises:
        BatchJobError: paths that do not exist (with the closest existing names), sources that match nothing, CSVs
            without a path column (every such source listed). Files a CSV lists are not checked here: one that is
            missing is that file's error (the others go on).
    """
    paths, problems = [], []
    for source in sources:
        found: list[str] = []
        if os.path.isdir(source):
            found = _folder_paths(Path(source))
        elif source.lower().endswith(".csv") and os.path.isfile(source):
            try:
                found = _csv_paths(Path(source), path_column)
            except BatchJobError as error:
                problems += error.problems
                continue
        elif glob.has_magic(source):
            found = sorted(p for p in glob.glob(source, recursive=True) if os.path.isfile(p))
        elif os.path.exists(source):
            found = [source]  # a single file; one that does not read is reported as that file's error
        else:  # a mistyped path: refused with the others, before anything is written
            problems.append(missing_input_problem(source))
            continue
        if not found:
            problems.append(Problem(source, f"{source}: matches no audio file", cause="inputs that match no file"))
        paths += found
    if problems:
        raise BatchJobError(problems, source="the inputs")
    return list(dict.fromkeys(paths))


# ----------------------------------------------------------------------------------------------------------------
# Outputs: append-only, repaired and read back on resume
# ----------------------------------------------------------------------------------------------------------------


def cut_last_recording(path: Path, header: list[str]) -> None:
    """Long-recording mode: a recording's rows are one write, but a kill inside it can leave some whole rows and
    no partial line. The last recording of the file may thus be incomplete: its rows are cut off, and it is done
    again (a resumed job redoes at most one recording)."""
    rows = _read_rows(path, header)
    if not rows:
        return
    last = rows[-1]["file"]
    while rows and rows[-1]["file"] == last:
        rows.pop()
    atomic_write_text(path, csv_text([list(row.values()) for row in rows], header).decode("utf-8"))


def _header_problem(path: Path, fieldnames, expected_header: list[str]) -> Problem | None:
    if fieldnames == expected_header:
        return None
    message = (
        f"{path}: existing columns {fieldnames} differ from this job's {expected_header} (another model or label "
        "set wrote it): choose another output file"
    )
    return Problem(str(path), message, cause="outputs written by another model")


def _read_rows(path: Path, expected_header: list[str]) -> list[dict]:
    """The rows of an output CSV written before; its header must be `expected_header`."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        problem = _header_problem(path, reader.fieldnames, expected_header)
        if problem is not None:
            raise BatchJobError([problem])
        return list(reader)


def output_header(labels: list[str], per_segment: bool = False) -> list[str]:
    """The predictions CSV's columns: `file, duration_s` (or the segment columns), `predicted, prob_<class>...`."""
    return ["file", *(SEGMENT_COLUMNS if per_segment else ["duration_s"]), PREDICTED, *probability_fields(labels)]


@dataclass
class JobOutputs:
    """The files of one job and what they already hold."""

    predictions: Path
    errors: Path
    timeline: Path | None
    header: list[str]
    per_segment: bool = False  # long-recording mode: one row per segment (`recordings.py`)
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)

    @classmethod
    def open(
        cls, predictions, labels, errors=None, timeline=None, retry_errors=False, per_segment=False, settings=None
    ) -> "JobOutputs":
        """Repair, check and read the outputs of an earlier run of the same job (all optional). `settings`
        (`job_record.job_settings`): refused (`BatchJobError`, nothing touched) when the outputs' recorded job had
        others; recorded beside the output when new."""
        if settings is not None and (problems := open_record(predictions, settings, errors, timeline)):
            raise BatchJobError(problems, source="the outputs")
        predictions = Path(predictions)
        errors = Path(errors) if errors else predictions.with_name(predictions.stem + ".errors.csv")
        timeline = Path(timeline) if timeline else None
        header = output_header(labels, per_segment)
        outputs = cls(predictions, errors, timeline, header, per_segment)
        for path in (predictions, errors, timeline):
            if path is not None and repair_partial_line(path):
                outputs.repaired.append(str(path))
        if per_segment:
            cut_last_recording(predictions, header)
        outputs.done = {row["file"] for row in _read_rows(predictions, header)}
        failed = {row["file"]: row["error"] for row in _read_rows(errors, ERROR_COLUMNS)}
        if retry_errors and errors.is_file():
            errors.unlink()
            failed = {}
        outputs.failed = {file: error for file, error in failed.items() if file not in outputs.done}
        if timeline is not None:
            outputs._drop_unfinished_timeline()
        if not predictions.is_file() or predictions.stat().st_size == 0:
            predictions.parent.mkdir(parents=True, exist_ok=True)
            append_bytes(predictions, csv_text([], header), "header")
        return outputs  # the errors CSV is created with its first row: no file when no file failed

    @staticmethod
    def problems(predictions, labels, errors=None, timeline=None, per_segment: bool = False) -> list[Problem]:
        """What `open` would refuse, found without writing: an existing output of another model or label set."""
        predictions = Path(predictions)
        errors = Path(errors) if errors else predictions.with_name(predictions.stem + ".errors.csv")
        header = output_header(labels, per_segment)
        problems = []
        for path, expected in ((predictions, header), (errors, ERROR_COLUMNS)):
            if path.is_file() and path.stat().st_size > 0:
                with open(path, newline="", encoding="utf-8") as f:
                    problem = _header_problem(path, next(csv.reader(f), None), expected)
                problems += [problem] if problem is not None else []
        return problems

    def _drop_unfinished_timeline(self) -> None:
        """Timeline lines are written before their CSV rows: keep only those of files the CSV holds, once each."""
        if not self.timeline.is_file():
            return
        kept, seen = [], set()
        lines = self.timeline.read_text(encoding="utf-8").splitlines()
        for line in lines:
            file = json.loads(line)["file"]
            if file in self.done and file not in seen:
                kept.append(line)
                seen.add(file)
        if len(kept) != len(lines):
            atomic_write_text(self.timeline, "".join(line + "\n" for line in kept))

    def write(self, results: list[tuple[str, dict]], failures: list[tuple[str, str]], labels: list[str]) -> None:
        """Append one group: timeline lines, then prediction rows, then error rows (each one fsynced write)."""
        lines = [_timeline_line(file, result) for file, result in results] if self.timeline is not None else []
        self.append([_row(file, result, labels) for file, result in results], [list(f) for f in failures], lines)

    def write_recording(self, file: str, duration: float, records: Iterable[dict], labels: list[str]) -> None:
        """Long-recording mode: one recording's per-segment records, each written as it comes to spool files on disk
        (its CSV rows; its timeline JSON), then appended as `write` does: the timeline line, then the rows (one
        fsynced append each, copied block by block). Memory does not grow with the number of segments, and a
        recording that fails midway leaves nothing in the outputs."""
        with tempfile.TemporaryFile() as rows, tempfile.TemporaryFile() as timeline:
            for count, record in enumerate(records):
                rows.write(csv_text([segment_row(file, record, labels)]))
                if self.timeline is not None:
                    text = json.dumps(segment_record(record, labels), ensure_ascii=False, default=float)
                    timeline.write(((", " if count else "") + text).encode("utf-8"))
            if self.timeline is not None:
                head = json.dumps(rounded({"file": file, "duration_s": duration}))[:-1] + ', "segments": ['
                leading, last = spool_parts(timeline)
                append_bytes(self.timeline, last + b"]}\n", "timeline", [head.encode("utf-8"), *leading])
            leading, last = spool_parts(rows)
            if last:
                fault_point("predict:before-rows")
                append_bytes(self.predictions, last, "predictions", leading)
                self.done.add(file)

    def append(self, rows: list[list], error_rows: list[list], timeline_lines: list[str]) -> None:
        """Append rows formatted by `write` (also read back from the Ray engine's part files): timeline lines, then
        prediction rows, then error rows, each one fsynced write. Rows of files already written are dropped, so
        appending the same group twice (a merge interrupted by a kill and redone) writes each file once."""
        rows = [row for row in rows if row[0] not in self.done]
        error_rows = [row for row in error_rows if row[0] not in self.done and row[0] not in self.failed]
        if self.timeline is not None and rows:
            files = {row[0] for row in rows}
            lines = [line for line in timeline_lines if json.loads(line)["file"] in files]
            append_bytes(self.timeline, "".join(lines).encode("utf-8"), "timeline")
        if rows:
            fault_point("predict:before-rows")
            append_bytes(self.predictions, csv_text(rows), "predictions")
            self.done.update(row[0] for row in rows)
        if error_rows:
            new_file = not self.errors.is_file() or self.errors.stat().st_size == 0
            append_bytes(self.errors, csv_text(error_rows, ERROR_COLUMNS if new_file else None), "errors")
            self.failed.update((file, error) for file, error in error_rows)
        fault_point("predict:group-written")


def _row(file: str, result: dict, labels: list[str]) -> list:
    probabilities = [format_probability(result[field]) for field in probability_fields(labels)]
    return [file, format_seconds(result["duration_s"]), result[PREDICTED], *probabilities]


def _timeline_line(file: str, result: dict) -> str:
    record = {"file": file, "duration_s": result["duration_s"], PREDICTED: result[PREDICTED]}
    return json.dumps(rounded({**record, "timeline": result["timeline"]})) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The job
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class BatchSummary:
    """What one run of the job did."""

    total: int  # files in the inputs
    skipped: int  # already in the outputs (resume)
    predicted: int  # written this run
    failed: int  # listed as errors this run
    audio_seconds: float  # of the files predicted this run
    wall_seconds: float
    repaired: list[str]  # outputs whose partial last line was cut off

    def describe(self) -> str:
        """One line: "4 file(s) predicted: processed 60.0 s of audio in 22.2 s (2.7× faster than real time); 0 failed,
        0 already done, 4 in all"."""
        return (
            f"{self.predicted} file(s) predicted: {speed_sentence(self.audio_seconds, self.wall_seconds)}; "
            f"{self.failed} failed, {self.skipped} already done, {self.total} in all"
        )


def _duration(seconds: float) -> str:
    """60.0 s; 12.5 min from 10 minutes on; 2.50 h from 2 hours on."""
    if seconds >= 7200:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 600 else f"{seconds:.1f} s"


def speed_sentence(audio_seconds: float, wall_seconds: float) -> str:
    """The one wording of inference speed, read one way only: "processed 60.0 s of audio in 22.2 s (2.7× faster
    than real time)"; "... (2.0× slower than real time)" below real time; no ratio without audio or time."""
    done = f"processed {_duration(audio_seconds)} of audio in {_duration(wall_seconds)}"
    if audio_seconds <= 0 or wall_seconds <= 0:
        return done
    ratio = audio_seconds / wall_seconds
    if ratio >= 1:
        return f"{done} ({ratio:.1f}× faster than real time)"
    return f"{done} ({1 / ratio:.1f}× slower than real time)"


def header_durations(paths: list[str]) -> tuple[list[tuple[str, float]], list[tuple[str, str]]]:
    """(path, seconds) from each file's header (no decoding), and (path, error) for files that cannot be opened."""
    good, bad = [], []
    for path in paths:
        if not os.path.isfile(path):
            bad.append((path, "file does not exist" if not os.path.exists(path) else "not a regular file"))
            continue
        try:
            good.append((path, audio_duration(path)))
        except AudioInputError as error:
            bad.append((path, str(error).removeprefix(f"{path}: ").removesuffix(".")))
    return good, bad


def progress_bar(total_hours: float, progress: bool | None):
    """The job's tqdm bar on stderr: hours of audio done of `total_hours`, ETA (`progress` None: on a terminal)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total_hours,
        unit="h",
        disable=(not progress) if progress is not None else None,
        bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} h audio [{elapsed}<{remaining}{postfix}]",
        desc="predict",
    )


def _predict_group(pipe, paths: list[str], batch_size: int, pipeline_kwargs: dict):
    """Predict a group of files; when one fails, each alone, so only the bad ones are lost."""
    try:
        return list(zip(paths, pipe(paths, batch_size=batch_size, **pipeline_kwargs))), []
    except Exception:  # noqa: BLE001  (isolate the failing file(s) below)
        pass
    results, failures = [], []
    for path in paths:
        try:
            results.append((path, pipe(path, **pipeline_kwargs)))
        except Exception as error:  # noqa: BLE001  (one bad file must not stop the job; the reason is listed)
            failures.append(_failure(path, error))
    return results, failures


def _write_recordings(pipe, outputs: "JobOutputs", paths: list[str], pipeline_kwargs: dict, segments, labels):
    """Long-recording mode: each recording predicted segment by segment and written as its segments come
    (`JobOutputs.write_recording`). Returns ([(path, {"duration_s": seconds})], [(path, error)])."""
    done, failures = [], []
    for path in paths:
        try:
            duration, records = predict_recording(pipe, path, segments, pipeline_kwargs)
            outputs.write_recording(path, duration, records, labels)
            done.append((path, {"duration_s": duration}))
        except Exception as error:  # noqa: BLE001  (one bad file must not stop the job; the reason is listed)
            if isinstance(error, FaultInjected):
                raise
            failures.append(_failure(path, error))
    return done, failures


def _failure(path: str, error: Exception) -> tuple[str, str]:
    """(path, the reason listed in the errors CSV)."""
    if isinstance(error, NoSegments):
        return path, str(error)
    if isinstance(error, AudioInputError):
        message = str(error)
        return path, message[len(path) + 2 :] if message.startswith(path + ": ") else message
    return path, f"{type(error).__name__}: {error}"


def window_settings(pipeline_kwargs: dict | None) -> dict:
    """The window settings among a batch job's `pipeline_kwargs` (`window_length_s`, `window_overlap_s`)."""
    return {key: value for key, value in (pipeline_kwargs or {}).items() if key in WINDOW_SETTINGS}


WINDOW_SETTINGS = ("window_length_s", "window_overlap_s")


def predict_files(
    pipe,
    paths: list[str],
    output: str | os.PathLike,
    *,
    errors_path: str | os.PathLike | None = None,
    timeline_path: str | os.PathLike | None = None,
    batch_size: int = 1,
    files_per_write: int = 16,
    retry_errors: bool = False,
    progress: bool | None = None,
    pipeline_kwargs: dict | None = None,
    segments: SegmentSource | None = None,
    settings: dict | None = None,
) -> BatchSummary:
    """Predict every file of `paths` with `pipe` (a `FrameAlignedEmotionPipeline`, any backend) into `output`.

    Files are sorted by header duration, longest first (similar lengths share a forward pass; the slowest part shows
    first in the ETA), run `batch_size` per forward pass and written `files_per_write` at a time. See the module
    docstring for the outputs and resume. `progress`: a tqdm bar (files, hours of audio, ETA) on stderr (`None`:
    only on a terminal). `pipeline_kwargs` go to every pipeline call (e.g. `window_length_s`). `segments` (a
    `recordings.SegmentSource`): long-recording mode, one row per segment (`file, start_s, end_s, speaker,
    predicted, prob_<class>...`), a recording's rows written together (resume skips recordings already in the CSV);
    a recording without segments (no speech) is listed in the errors CSV with the reason. `settings`
    (`job_record.job_settings`; default: `pipeline_settings` of `pipe`): a resume with other settings is refused.

    Raises:
        BatchJobError: the output was written by a model with other labels, or by a job with other `settings`.
        ValueError: `pipeline_kwargs`' window settings do not suit the model (checked before any file is read,
            rather than failing every file into the errors CSV).
    """
    started = time.perf_counter()
    pipe.window_and_step(**window_settings(pipeline_kwargs))
    labels = list(pipe.classes)
    settings = settings or pipeline_settings(pipe, pipeline_kwargs, segments)
    outputs = JobOutputs.open(output, labels, errors_path, timeline_path, retry_errors, segments is not None, settings)
    pending = [path for path in paths if path not in outputs.done and path not in outputs.failed]
    timed, unreadable = header_durations(pending)
    timed.sort(key=lambda item: -item[1])
    total_hours = sum(seconds for _, seconds in timed) / 3600
    outputs.write([], unreadable, labels)
    bar = progress_bar(total_hours, progress)
    predicted, failed, audio_seconds, done_hours = 0, len(unreadable), 0.0, 0.0
    for start in range(0, len(timed), max(1, files_per_write)):
        group = timed[start : start + max(1, files_per_write)]
        paths_of_group = [path for path, _ in group]
        if segments is None:
            results, failures = _predict_group(pipe, paths_of_group, batch_size, pipeline_kwargs or {})
            outputs.write(results, failures, labels)
        else:
            kwargs = {**(pipeline_kwargs or {}), "batch_size": batch_size}
            results, failures = _write_recordings(pipe, outputs, paths_of_group, kwargs, segments, labels)
            outputs.write([], failures, labels)
        predicted, failed = predicted + len(results), failed + len(failures)
        audio_seconds += sum(result["duration_s"] for _, result in results)
        done_hours += sum(seconds for _, seconds in group) / 3600
        bar.update(min(done_hours, total_hours) - bar.n)  # no float overshoot past the total
        bar.set_postfix_str(f"files {start + len(group)}/{len(timed)}, errors {failed}")
    bar.close()
    return BatchSummary(
        total=len(paths),
        skipped=len(paths) - len(pending),
        predicted=predicted,
        failed=failed,
        audio_seconds=audio_seconds,
        wall_seconds=time.perf_counter() - started,
        repaired=outputs.repaired,
    )
