"""Audio columns of `datasets` as the Trainer and collator see them: decodable without torchcodec, and measurable.

A `datasets.Audio()` column decodes through torchcodec only (datasets 5.x): without it, every row access raises
`ImportError`. `readable_audio` casts such a column to `Audio(decode=False)` (`{"path", "bytes"}` rows, read by
`modeling.audio.load_audio`); the data stay in Arrow (a cast of the feature, no copy of the column).
`audio_lengths` gives each row's length in seconds for length-grouped batches and the evaluation order, THE length
reader of the project (the Trainer's samplers, `longest_first`, the frozen-prefix cache, `loader: hub`): the
`duration_s` column (`DURATION_COLUMN`, what every Dataset the project builds has), else a legacy `duration` column
(lhotse's and SpeechBrain's manifests name it so; seconds too), else the audio headers (paths or embedded bytes), read
in batches without decoding the samples. `row_duration` is the same rule for one dict row.
"""

import io
import logging
import math

import pyarrow as pa
from datasets import Audio, Dataset

from ..audio import AudioInputError, input_duration, torchcodec_available


logger = logging.getLogger(__name__)

LENGTH_BATCH = 256  # rows read at a time when lengths come from the audio itself
DURATION_COLUMN = "duration_s"  # a clip's length in seconds (float64), in every Dataset and file the project writes
LEGACY_DURATION_COLUMN = "duration"  # the same in users' datasets (lhotse, SpeechBrain manifests): read as seconds


def audio_columns(dataset) -> list[str]:
    """Names of the dataset's `datasets.Audio` columns (none for an iterable or a non-`datasets` dataset)."""
    features = getattr(dataset, "features", None) or {}
    return [name for name, feature in features.items() if isinstance(feature, Audio)]


def readable_audio(dataset, column: str | None = None):
    """`dataset` with its `Audio()` columns (or only `column`) cast to `Audio(decode=False)` where torchcodec is
    missing, so that rows hold `{"path", "bytes"}` instead of raising; unchanged otherwise (then rows hold
    torchcodec `AudioDecoder`s, which `load_audio` accepts too)."""
    if not isinstance(dataset, Dataset) or torchcodec_available():
        return dataset
    for name in audio_columns(dataset):
        if (column is None or name == column) and dataset.features[name].decode:
            dataset = dataset.cast_column(
                name, Audio(decode=False, sampling_rate=dataset.features[name].sampling_rate)
            )
    return dataset


def undecoded(dataset: Dataset, column: str) -> Dataset:
    """`dataset` reduced to `column`, with an `Audio` column cast to `Audio(decode=False)` (headers only)."""
    dataset = dataset.remove_columns([name for name in dataset.column_names if name != column])
    feature = dataset.features[column]
    if isinstance(feature, Audio) and feature.decode:
        dataset = dataset.cast_column(column, Audio(decode=False))
    return dataset


def duration_column(column_names, length_column: str | None = None) -> str | None:
    """The column lengths are read from: `length_column` (a Trainer's `length_column_name`) when the dataset has it,
    else `duration_s`, else the legacy `duration` (seconds); None when it has none of them."""
    for column in (length_column, DURATION_COLUMN, LEGACY_DURATION_COLUMN):
        if column and column in column_names:
            return column
    return None


def row_duration(row, audio_column: str = "audio") -> float:
    """One dict row's length in seconds: its `duration_s`, else its legacy `duration`, else its audio's header
    (a missing value, None or NaN, counts as absent).

    Raises:
        ValueError: a value that is not a number.
        AudioInputError: the value comes from the audio and its header cannot be read.
        KeyError: the row has none of these.
    """
    for column in (DURATION_COLUMN, LEGACY_DURATION_COLUMN):
        seconds = _seconds(row.get(column), f"column {column!r}")
        if seconds is not None:
            return seconds
    return input_duration(row[audio_column])


def audio_lengths(
    dataset: Dataset, audio_column: str = "audio", length_column: str | None = None, *, strict: bool = True
) -> list[float | None]:
    """Per-row length in seconds, for length-grouped batching and the evaluation order.

    Taken from `duration_column(dataset.column_names, length_column)` (`length_column`, else `duration_s`, else the
    legacy `duration`) when the dataset has one; rows without a value there (None or NaN), or every row when it has
    none, from the audio (file headers of paths or embedded bytes, `LENGTH_BATCH` rows at a time; arrays from their
    length).

    Args:
        strict: False gives None for a row whose audio cannot be read (the dataset checks report it) instead of
            raising.
    Returns:
        (N,) floats (None only with `strict=False`).
    Raises:
        ValueError: no such column, a value that is not a number, or (strict) a row whose length cannot be read (the
            row and the reason are named).
    """
    names = dataset.column_names
    column = duration_column(names, length_column)
    if column:
        lengths = [_seconds(value, f"row {row} of column {column!r}") for row, value in enumerate(dataset[column])]
    else:
        lengths = [None] * len(dataset)
    missing = [i for i, value in enumerate(lengths) if value is None]
    if not missing:
        return lengths
    if audio_column not in names:
        where = f"row {missing[0]} has no {column!r} value" if column else "the dataset has no length column"
        raise ValueError(
            f"cannot infer lengths: {where} (tried {length_column!r}, {DURATION_COLUMN!r}, "
            f"{LEGACY_DURATION_COLUMN!r}) and no audio column {audio_column!r} to read them from (it has {names})."
        )
    view = undecoded(dataset if len(missing) == len(dataset) else dataset.select(missing), audio_column)
    view = view.with_format("arrow")
    position = 0
    for start in range(0, len(view), LENGTH_BATCH):
        for value in arrow_values(view[start : start + LENGTH_BATCH].column(audio_column)):
            row = missing[position]
            position += 1
            try:
                lengths[row] = input_duration(value)
            except AudioInputError as error:
                if strict:
                    raise ValueError(f"row {row} of column {audio_column!r}: {error}") from error
    return lengths


def _seconds(value, where: str) -> float | None:
    """A length column's value as float seconds; None (read from the audio) for None or NaN (pandas' missing)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {value!r} is not a length in seconds.") from None
    return None if math.isnan(seconds) else seconds


class ArrowBytesReader(io.RawIOBase):
    """A read-only file over an Arrow buffer (zero-copy): soundfile reads the header pages only, so measuring a
    corpus does not pull every embedded file into memory."""

    def __init__(self, buffer: pa.Buffer):
        super().__init__()
        self._view, self._position = memoryview(buffer), 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self._position

    def seek(self, offset, whence=io.SEEK_SET):
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        end = min(len(self._view), self._position + len(buffer))
        count = max(0, end - self._position)
        buffer[:count] = self._view[self._position : end]
        self._position += count
        return count


def arrow_values(column: pa.ChunkedArray):
    """Rows of an audio column as `load_audio` inputs, embedded bytes as `ArrowBytesReader`s (no copy)."""
    for chunk in column.chunks:
        if pa.types.is_struct(chunk.type) and chunk.type.get_field_index("bytes") >= 0:
            data = chunk.field("bytes")
            paths = chunk.field("path") if chunk.type.get_field_index("path") >= 0 else None
            for i in range(len(chunk)):
                if data[i].is_valid:
                    yield {"bytes": ArrowBytesReader(data[i].as_buffer())}
                else:
                    yield {"path": paths[i].as_py() if paths is not None else None}
        else:
            yield from chunk.to_pylist()


__all__ = [
    "DURATION_COLUMN",
    "LEGACY_DURATION_COLUMN",
    "ArrowBytesReader",
    "arrow_values",
    "audio_columns",
    "audio_lengths",
    "duration_column",
    "readable_audio",
    "row_duration",
    "undecoded",
]
