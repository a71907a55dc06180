"""Segments of long recordings: reading them (RTTM, SRT/VTT, CSV/JSON), finding them (silero-vad), and writing
per-segment emotion (CSV, JSON lines, RTTM, SRT/VTT). The segment type and the streaming reader of segment audio are
in the core (`modeling/timeline_recording.py`), which the pipeline uses for `segments=`."""

from ..timeline_recording import Segment, SegmentError, as_segments
from .readers import SEGMENT_FORMATS, read_segments
from .writers import RESULT_FORMATS, SegmentResultWriter, write_segment_results


__all__ = [
    "RESULT_FORMATS",
    "SEGMENT_FORMATS",
    "Segment",
    "SegmentResultWriter",
    "SegmentError",
    "as_segments",
    "read_segments",
    "write_segment_results",
]
