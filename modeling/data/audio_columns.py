"""Audio columns of `datasets` as the Trainer and collator see them: decodable without torchcodec, and measurable.

A `datasets.Audio()` column decodes through torchcodec only (datasets 5.x): without it, every row access raises
`ImportError`. `readable_audio` casts such a column to `Audio(decode=False)` (`{"path", "bytes"}` rows, read by
`modeling.audio.load_audio`); the data stay in Arrow (a cast of the feature, no copy of the column).
`audio_lengths` gives each row's duration for length-grouped batches: a `duration` column when there is one, else
the audio headers (paths or embedded bytes), read in batches without decoding the samples.
"""

import io
import logging

import pyarrow as pa
from datasets import Audio, Dataset

from ..audio import AudioInputError, input_duration, torchcodec_available


logger = logging.getLogger(__name__)

LENGTH_BATCH = 256  # rows read at a time when lengths come from the audio itself


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


def audio_lengths(dataset: Dataset, audio_column: str = "audio", length_column: str | None = None) -> list[float]:
    """Per-row length in seconds, for length-grouped batching.

    Taken from `length_column` when the dataset has it, else from a `duration` column, else from the audio
    (file headers of paths or embedded bytes, `LENGTH_BATCH` rows at a time; arrays from their length).

    Raises:
        ValueError: no such column, or a row whose length cannot be read (the row and the reason are named).
    """
    names = dataset.column_names
    for column in (length_column, "duration"):
        if column and column in names:
            return [float(value) for value in dataset[column]]
    if audio_column not in names:
        raise ValueError(
            f"cannot infer lengths: the dataset has neither a {length_column or 'duration'!r} column nor an audio "
            f"column {audio_column!r} (it has {names})."
        )
    lengths: list[float] = []
    table_view = undecoded(dataset, audio_column).with_format("arrow")
    for start in range(0, len(dataset), LENGTH_BATCH):
        for value in arrow_values(table_view[start : start + LENGTH_BATCH].column(audio_column)):
            try:
                lengths.append(input_duration(value))
            except AudioInputError as error:
                raise ValueError(f"row {len(lengths)} of column {audio_column!r}: {error}") from error
    return lengths


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


__all__ = ["ArrowBytesReader", "arrow_values", "audio_columns", "audio_lengths", "readable_audio", "undecoded"]
