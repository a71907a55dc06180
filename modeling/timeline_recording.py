"""Segments of a long recording and their audio, read segment by segment (never the whole recording in memory).

A `Segment` is one stretch of a recording in seconds (a speaker turn from RTTM, a subtitle cue, a CSV row, a
voice-activity region) with its speaker and where it came from (`"call.rttm:12"`), so that every problem names the
file and the line. `iter_segment_audio` seeks to each segment in the file with soundfile and decodes only its
samples, so memory is O(longest segment) whatever the recording's length.

Part of the remote-code core (numpy, soundfile, soxr and its siblings only): `FrameAlignedEmotionPipeline` imports it
for `pipeline(...)(audio, segments=...)`. The readers of segment files (RTTM, SRT/VTT, CSV/JSON) and the voice
activity detector are in `modeling/segments/`.
"""

import ctypes
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from .audio import AudioInputError, describe_source, load_audio, open_audio_file


class SegmentError(ValueError):
    """A segment that cannot be used: end before start, outside the audio, a malformed row. The message names the
    file and the line (or the list index) of every problem."""


@dataclass(frozen=True)
class Segment:
    """One stretch of a recording.

    Attributes:
        start_s, end_s: seconds from the recording's start (end_s > start_s).
        speaker: the speaker label (RTTM's name field, a subtitle's voice, a CSV's `speaker` column), or None.
        source: where the segment was read ("turns.rttm:12", "segments[3]"), for error messages.
    """

    start_s: float
    end_s: float
    speaker: str | None = None
    source: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def where(self) -> str:
        return self.source or f"segment {self.start_s:.3f}-{self.end_s:.3f} s"


def as_segments(segments: Iterable, name: str = "segments") -> list[Segment]:
    """Segments in any of the accepted forms → `Segment`s, every problem listed at once.

    Accepted items: `Segment`; a mapping with `start_s`/`end_s` (or `start`/`end`) and optionally `speaker`; a tuple
    `(start, end)` or `(start, end, speaker)`. Times are seconds.

    Raises:
        SegmentError: naming each bad item (`segments[i]` or its `source`): not numbers, not finite, negative,
        or end ≤ start.
    """
    result, problems = [], []
    for index, item in enumerate(segments):
        where = f"{name}[{index}]"
        try:
            segment = _one_segment(item, where)
        except (TypeError, ValueError, KeyError) as error:
            problems.append(f"{where}: {error}")
            continue
        problem = segment_problem(segment.start_s, segment.end_s)
        if problem:
            problems.append(f"{segment.where()}: {problem}")
        else:
            result.append(segment)
    if problems:
        raise SegmentError("bad segments:\n  " + "\n  ".join(problems))
    return result


def _one_segment(item, where: str) -> Segment:
    if isinstance(item, Segment):
        return item
    if isinstance(item, Mapping):
        start = item["start_s"] if "start_s" in item else item["start"]
        end = item["end_s"] if "end_s" in item else item["end"]
        speaker = item.get("speaker")
        source = item.get("source", where)
    elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
        start, end, speaker, source = item[0], item[1], (item[2] if len(item) == 3 else None), where
    else:
        raise TypeError(
            f"expected a Segment, a mapping with start_s/end_s or a (start, end[, speaker]) tuple, got {item!r}"
        )
    return Segment(float(start), float(end), None if speaker is None else str(speaker), source)


def segment_problem(start_s: float, end_s: float) -> str | None:
    """What is wrong with a segment's times (None if nothing)."""
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        return f"times must be finite, got start {start_s}, end {end_s}"
    if start_s < 0:
        return f"start {start_s} s is negative"
    if end_s <= start_s:
        return f"end {end_s} s is not after start {start_s} s"
    return None


def clip_segments(segments: list[Segment], duration_s: float, name: str, warn) -> list[Segment]:
    """The rule for segments past the end of the audio: one that ends after the audio does is CLIPPED to the audio's
    end with a warning (`warn(message)`) naming its file and line (diarization and ASR timestamps often overshoot the
    last sample by a few milliseconds); one that starts at or after the end has no audio at all and is REFUSED
    (`SegmentError`, every such segment listed)."""
    refused = [s for s in segments if s.start_s >= duration_s]
    if refused:
        listed = "\n  ".join(f"{s.where()}: starts at {s.start_s} s" for s in refused)
        raise SegmentError(f"{name} lasts {duration_s:.3f} s; these segments start at or after its end:\n  {listed}")
    clipped = []
    for segment in segments:
        if segment.end_s > duration_s:
            warn(
                f"{segment.where()}: ends at {segment.end_s} s, past the end of {name} ({duration_s:.3f} s); "
                "clipped to the end."
            )
            segment = Segment(segment.start_s, duration_s, segment.speaker, segment.source)
        clipped.append(segment)
    return clipped


def recording_duration(audio, sampling_rate: int, name: str) -> float:
    """Seconds of a file (from its header) or of an array at `sampling_rate`."""
    if isinstance(audio, (str, os.PathLike)):
        with open_audio_file(audio, name) as info:
            return info.frames / info.samplerate
    return len(audio) / sampling_rate


def iter_segment_audio(
    audio,
    segments: list[Segment],
    target_sampling_rate: int,
    min_samples: int,
    name: str | None = None,
) -> Iterator[tuple[Segment, np.ndarray]]:
    """Each segment's samples, in the order given, as the model gets them (mono float32 at `target_sampling_rate`).

    A file is opened once and each segment read by seeking: samples ⌊start·sr⌋ … ⌊end·sr⌋ (exclusive) at the file's
    own rate sr, down-mixed and resampled (soxr) exactly as `load_audio` does for a file holding only that cut. An
    array (already at `target_sampling_rate`) is sliced the same way. Memory: one segment at a time.

    Args:
        audio: a path soundfile reads, or a (N,) float array at `target_sampling_rate`.
        segments: inside the audio (see `clip_segments`).
        min_samples: shorter cuts are zero-padded to this (the model's receptive field), as `load_audio` does.
    Yields:
        (segment, (num_samples,) float32).
    """
    name = name or describe_source(audio)
    if not isinstance(audio, (str, os.PathLike)):
        array = np.asarray(audio, dtype=np.float32)
        for segment in segments:
            cut = array[int(segment.start_s * target_sampling_rate) : int(segment.end_s * target_sampling_rate)]
            yield (
                segment,
                load_audio(
                    cut,
                    target_sampling_rate,
                    target_sampling_rate=target_sampling_rate,
                    min_samples=min_samples,
                    name=f"{name}, {segment.where()}",
                ),
            )
        return
    with open_audio_file(audio, name) as sound_file:
        rate = int(sound_file.samplerate)
        for segment in segments:
            first, last = int(segment.start_s * rate), min(int(segment.end_s * rate), sound_file.frames)
            sound_file.seek(first)
            try:
                block = sound_file.read(max(0, last - first), dtype="float32", always_2d=True)
            except Exception as error:  # libsndfile's errors are several types
                raise AudioInputError(f"{name}: cannot decode {segment.where()} ({error}).") from error
            yield (
                segment,
                load_audio(
                    block.mean(axis=1, dtype=np.float32),
                    rate,
                    target_sampling_rate=target_sampling_rate,
                    min_samples=min_samples,
                    name=f"{name}, {segment.where()}",
                ),
            )


def iter_segment_results(run, audio, segments, sampling_rate: int, min_samples: int, batch_size: int, warn):
    """The pipeline's `segments=` path: segments checked and clipped, their audio read one at a time, `batch_size`
    cuts per `run(cuts) → [results]` call, each result with the segment's `start_s`, `end_s`, `speaker` first and its
    `timeline` / `windows` moved to recording seconds.

    Args:
        run: the pipeline on a list of (N,) arrays at `sampling_rate` → one result dict per array.
        audio: a path (read by seeking) or a (N,) array at `sampling_rate`.
        warn: called with each warning (clipped segments, no segments).
    """
    name = describe_source(audio)
    segments = clip_segments(as_segments(segments), recording_duration(audio, sampling_rate, name), name, warn)
    if not segments:
        warn(f"{name}: no segments (no speech found?): the result is empty.")
    batch = []
    for item in iter_segment_audio(audio, segments, sampling_rate, min_samples, name):
        batch.append(item)
        if len(batch) == batch_size:
            records = _results(run, batch)
            batch = []
            release_free_heap()
            yield from records
    yield from _results(run, batch)
    release_free_heap()


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc (Linux); musl, macOS and Windows have none
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_heap() -> None:
    """Return the C heap's free pages to the system (glibc's `malloc_trim(0)`; nothing where there is none).

    Why: every segment has its own length, so every forward pass allocates tensors of new sizes (the first conv
    layer's output alone is 128 channels × samples/5 floats on our quick model: 7.5 MB for a 4.6 s segment). glibc
    serves them from its heap once its dynamic mmap threshold has risen past them, and the heap fragments: freed
    holes are too small for the next, larger tensor and stay resident. Peak RSS then grows with the number of
    segments without any leak (tracemalloc: < 2 MB of Python objects alive, torch's CPU allocator keeps no free block).
    Measured on a 15-minute recording of polish3 words (525 segments, quick random model, one thread): labelling
    added 216 MB to the peak RSS without trimming, 99 MB with `malloc_trim(0)` after each batch (87 MB for
    1 minute: the working set of one segment), 92 MB with `MALLOC_MMAP_THRESHOLD_=65536`; CPU time +8 % with the
    trim, +40 % with the fixed mmap threshold (every large tensor a fresh, zeroed mapping), so trimming it is.
    With the trim, a tiny model adds 22 MB for 4 minutes and 39 MB for 16: oneDNN's cache of kernels per input shape
    (a bounded LRU, 1024 entries by default; 0.6 and 2.2 MB with oneDNN off). The benchmark
    (`benchmarks/emotion_diarization.py --memory-only`) measures 1 minute to 10 hours;
    `tests/test_long_recording_memory.py` guards it.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _results(run, batch: list[tuple[Segment, np.ndarray]]) -> list[dict]:
    records = []
    for (segment, _), result in zip(batch, run([cut for _, cut in batch]) if batch else []):
        for key in ("timeline", "windows"):  # segment seconds → recording seconds
            result[key] = [
                {
                    **part,
                    "start_s": round(part["start_s"] + segment.start_s, 6),
                    "end_s": round(part["end_s"] + segment.start_s, 6),
                }
                for part in result[key]
            ]
        records.append({"start_s": segment.start_s, "end_s": segment.end_s, "speaker": segment.speaker, **result})
    return records


__all__ = [
    "Segment",
    "SegmentError",
    "as_segments",
    "clip_segments",
    "iter_segment_audio",
    "iter_segment_results",
    "recording_duration",
    "release_free_heap",
]
