"""Frame post-processing for the emotion timeline (numpy only): overlapping windows for long inputs, stitching
windows, smoothing, and segments of one dominant emotion. How many frames a window gives is `.frames`' business.

Used by `modeling.pipeline_frame_aligned.FrameAlignedEmotionPipeline`; `window_problems` (the one check of the window
settings) also by predict.py and the timeline command before they read any file.
"""

import heapq
import math
import numbers
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .prediction_fields import prediction_record, tempered


# The window settings' defaults (seconds): inputs longer than WINDOW_LENGTH_S run in windows overlapping by
# WINDOW_OVERLAP_S. The CLIs (predict.py --window/--window-overlap, the timeline's) take them from here.
WINDOW_LENGTH_S = 20.0
WINDOW_OVERLAP_S = 4.0
WINDOW_NAMES = ("window_length_s", "window_overlap_s")


def window_problems(
    window_length_s,
    window_overlap_s,
    sampling_rate: int = 16000,
    receptive_field: int = 1,
    names: tuple[str, str] = WINDOW_NAMES,
) -> list[str]:
    """Every problem with a pair of window settings (seconds), as sentences naming them by `names` (the pipeline's
    parameters, or a CLI's flags); [] when they are usable. The one check of window settings: the pipeline runs it
    (with the model's `sampling_rate` and `receptive_field`, in samples) before it cuts anything, the CLIs before
    they read any file (with the defaults: no model needed; then with the model's geometry once it is loaded).

    Rules: `window_length_s` is a finite number ≥ 0 (0 or None: never cut into windows); `window_overlap_s` a finite
    number ≥ 0 (raised to the receptive field when below it); with windows, the window must be at least two receptive
    fields long and longer than the overlap (by at least one sample at `sampling_rate`).
    """
    window_name, overlap_name = names
    problems = []

    def seconds(value, name: str) -> bool:
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        usable = number and math.isfinite(value) and value >= 0
        if not usable:
            problems.append(f"{name}={value!r}: expected a number of seconds ≥ 0.")
        return usable

    window_ok = window_length_s is None or seconds(window_length_s, window_name)
    overlap_ok = window_overlap_s is None or seconds(window_overlap_s, overlap_name)
    if not (window_ok and overlap_ok) or not window_length_s:  # None or 0: no windows, the overlap is unused
        return problems
    window = int(round(window_length_s * sampling_rate))
    # Consecutive windows must share at least one receptive field, or a frame between them would be lost.
    overlap = max(int(round((window_overlap_s or 0) * sampling_rate)), receptive_field)
    if window < 2 * receptive_field:
        problems.append(
            f"{window_name}={window_length_s} is shorter than two receptive fields of the model "
            f"({2 * receptive_field / sampling_rate:.3f} s)."
        )
    elif overlap >= window:
        problems.append(
            f"{window_name}={window_length_s} must be longer than {overlap_name}={window_overlap_s} (consecutive "
            f"windows overlap by that much): give a longer {window_name}, a shorter {overlap_name} (e.g. a quarter "
            f"of the window, {window_length_s / 4:g}), or {window_name}=0 to run every input whole."
        )
    return problems


SMOOTHING_METHODS = ("median", "mean", "none")


# ----------------------------------------------------------------------------------------------------------------
# Long inputs: overlapping windows in bounded memory
# ----------------------------------------------------------------------------------------------------------------


def iter_windows(blocks: Iterable[np.ndarray], window: int, step: int, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of sample blocks into overlapping windows that together give every frame of the whole stream.

    A stream of at most `window` samples gives one window with all of it. A longer one of N samples gives windows of
    exactly `window` samples starting at 0, step, 2·step, ... and a final one that starts on the frame grid at
    s = ⌊(N − window) / hop⌋·hop and runs to the stream's end: N − s = window + (N − window) mod hop samples, i.e.
    between `window` and `window + hop − 1`. Because s is a multiple of `hop` and the final window ends where the
    stream does, s/hop + frames(N − s) = frames(N): the final window's frames end with the whole input's last frame
    (a final window of exactly `window` samples would miss it whenever (N − window) mod hop + (window − receptive
    field) mod hop ≥ hop). All windows lie on the same frame grid; all but the final one have equal lengths, so a
    batch of them runs without padding (batched results stay identical to one-by-one ones on any backbone).

    A window of `window` samples is yielded as soon as `hop` samples past its end have arrived (then it surely is not
    the final window); between blocks at most window + hop samples are held (plus the block being added).

    Args:
        blocks: consecutive 1-D float32 sample blocks (e.g. from `iter_audio_blocks`).
        window, step, hop: in samples; `step` must be a positive multiple of `hop`.
    Yields:
        (start sample, (length,) float32 window); length ≤ window + hop − 1.
    """
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = next_start = 0
    for block in blocks:
        buffer = np.concatenate([buffer, np.asarray(block, dtype=np.float32)])
        buffer_end = buffer_start + len(buffer)
        # ≥ hop samples follow this window, so the final window starts after it (⌊(N − window) / hop⌋·hop > start).
        while next_start + window + hop <= buffer_end:
            yield next_start, buffer[next_start - buffer_start : next_start + window - buffer_start].copy()
            next_start += step
        # Keep what the next window, or the final window (from > buffer_end − window − hop), may still need.
        keep_from = max(buffer_start, min(next_start, buffer_end - window - hop))
        buffer = buffer[keep_from - buffer_start :]
        buffer_start = keep_from
    total = buffer_start + len(buffer)
    if total <= window:
        yield 0, buffer.copy()
        return
    last_start = (total - window) // hop * hop  # > every start yielded above (see the loop): a new window
    yield last_start, buffer[last_start - buffer_start :].copy()


# ----------------------------------------------------------------------------------------------------------------
# Frame post-processing: stitching, smoothing, segments
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class WindowPrediction:
    """The model's output for one window of an input.

    Attributes:
        start: first sample of the window in the input (a multiple of the hop).
        num_samples: window length in samples.
        probabilities: (num_labels,) utterance distribution q = softmax(logits / T) of the window (T: the
            calibration temperature; 1 uncalibrated).
        frame_probabilities: (num_frames, num_labels) p_t = softmax(frame_logits), valid frames only, uncalibrated:
            the segments are cut on them (`build_timeline` puts what it shows on the scale of T).
        frame_weights: (num_frames,) α_t of the window (sums to 1 over the window).
    """

    start: int
    num_samples: int
    probabilities: np.ndarray
    frame_probabilities: np.ndarray
    frame_weights: np.ndarray


def stitch_windows(windows: list[WindowPrediction], hop: int):
    """Join overlapping windows into one frame sequence with no gaps and no overlaps.

    Each frame is taken from the window in which it is most central: between consecutive windows the ownership
    boundary is the middle of their overlap, so every kept frame has at least half the overlap as context.

    α is renormalised so that it still sums to 1 over the whole input: within a window the relative weights are the
    model's, and each window's total is its share of the kept frames (its duration). The overall utterance
    distribution uses the same shares, Σ_k share_k · q_k, i.e. it is duration-weighted. Why not α-weighted across
    windows: α is a softmax *within* one window, so its raw values are not comparable between windows; duration
    weighting counts every second of audio once, and coincides with weighting by the renormalised α mass.

    Args:
        windows: the windows of one input, sorted by start.
        hop: samples per frame.
    Returns:
        frame_probabilities (T, C), frame_weights (T,) summing to 1, probabilities (C,), shares (K,) summing to 1.
    """
    offsets = [part.start // hop for part in windows]
    ends = [offset + len(part.frame_weights) for offset, part in zip(offsets, windows)]
    bounds = [0]
    for k in range(len(windows) - 1):
        bounds.append(min(max((offsets[k + 1] + ends[k]) // 2, offsets[k + 1]), ends[k]))
    bounds.append(ends[-1])
    total = bounds[-1]
    probabilities = np.zeros((total, windows[0].frame_probabilities.shape[1]))
    weights = np.zeros(total)
    shares = np.zeros(len(windows))
    for k, part in enumerate(windows):
        low, high = bounds[k], max(bounds[k], bounds[k + 1])
        local = slice(low - offsets[k], high - offsets[k])
        probabilities[low:high] = part.frame_probabilities[local]
        alpha = part.frame_weights[local].astype(np.float64)
        alpha = alpha / alpha.sum() if alpha.sum() > 0 else np.full(len(alpha), 1.0 / max(len(alpha), 1))
        shares[k] = (high - low) / total
        weights[low:high] = alpha * shares[k]
    utterance = sum(share * part.probabilities for share, part in zip(shares, windows))
    return probabilities, weights, utterance / utterance.sum(), shares


def smooth_frames(probabilities: np.ndarray, method: str = "median", window: int = 1) -> np.ndarray:
    """Smooth (T, C) frame distributions over time with an odd `window` (frames); rows still sum to 1.

    "mean": moving average; "median": per-class running median, renormalised (a median keeps sharp emotion changes
    but removes isolated flips); "none": unchanged. Edges repeat the first/last frame.
    """
    if method not in SMOOTHING_METHODS:
        raise ValueError(f"`smoothing` must be one of {SMOOTHING_METHODS}, got {method!r}.")
    window = int(window) | 1  # odd: centred
    if method == "none" or window <= 1 or len(probabilities) <= 1:
        return probabilities
    half = window // 2
    padded = np.pad(probabilities, ((half, half), (0, 0)), mode="edge")
    if method == "mean":
        cumulative = np.cumsum(np.pad(padded, ((1, 0), (0, 0))), axis=0)
        smoothed = (cumulative[window:] - cumulative[:-window]) / window
    else:
        views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (T, C, window)
        smoothed = np.median(views, axis=-1)
    return smoothed / smoothed.sum(axis=-1, keepdims=True)


def label_runs(frame_labels: np.ndarray) -> list[list[int]]:
    """Runs of equal labels → [[start_frame, end_frame, label], ...] (end exclusive)."""
    if len(frame_labels) == 0:
        return []
    change = np.flatnonzero(np.diff(frame_labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(frame_labels)]])
    return [[int(s), int(e), int(frame_labels[s])] for s, e in zip(starts, ends)]


def merge_short_segments(segments: list[list[int]], probabilities: np.ndarray, min_frames: int) -> list[list[int]]:
    """Absorb segments shorter than `min_frames` into a neighbour, shortest first, until none is left (or one segment).

    A short segment joins the neighbour whose emotion is more probable over the short segment's frames (ties: the
    longer neighbour); neighbours left with the same emotion are merged. O(n log n) with a heap.

    Args:
        segments: [[start_frame, end_frame, label], ...] covering the frames contiguously.
        probabilities: (T, C) frame distributions the choice is based on.
    """
    if min_frames <= 1 or len(segments) <= 1:
        return segments
    cumulative = np.concatenate([np.zeros((1, probabilities.shape[1])), np.cumsum(probabilities, axis=0)])
    start = [s for s, _, _ in segments]
    end = [e for _, e, _ in segments]
    label = [lab for _, _, lab in segments]
    prev = list(range(-1, len(segments) - 1))
    next_ = list(range(1, len(segments) + 1))
    next_[-1] = -1
    alive = [True] * len(segments)
    heap = [(end[i] - start[i], start[i], i) for i in range(len(segments))]
    heapq.heapify(heap)
    remaining = len(segments)

    def absorb(keep: int, gone: int):  # `keep` takes over `gone`'s frames; `gone` must be its neighbour
        nonlocal remaining
        start[keep], end[keep] = min(start[keep], start[gone]), max(end[keep], end[gone])
        alive[gone] = False
        remaining -= 1
        before, after = prev[gone], next_[gone]
        if before >= 0:
            next_[before] = after
        if after >= 0:
            prev[after] = before

    while heap and remaining > 1:
        length, _, i = heapq.heappop(heap)
        if not alive[i] or length != end[i] - start[i]:
            continue  # stale heap entry
        if length >= min_frames:
            break
        candidates = [j for j in (prev[i], next_[i]) if j >= 0]
        mean_prob = (cumulative[end[i]] - cumulative[start[i]]) / length
        target = max(candidates, key=lambda j: (mean_prob[label[j]], end[j] - start[j]))
        absorb(target, i)
        for other in (prev[target], next_[target]):  # neighbours now adjacent with the same emotion
            if other >= 0 and label[other] == label[target]:
                absorb(target, other)
        heapq.heappush(heap, (end[target] - start[target], start[target], target))
    merged, i = [], next(k for k in range(len(segments)) if alive[k] and prev[k] < 0)
    while i >= 0:
        merged.append([start[i], end[i], label[i]])
        i = next_[i]
    return merged


def label_by_mean(segments: list[list[int]], probabilities: np.ndarray) -> list[list[int]]:
    """Give every segment the most probable class of its mean (T, C) distribution, and join neighbours that end up
    with the same class. Absorbing a short segment can tip a segment's mean towards another class than the one
    its frames started with: the label shown must be the one its own probabilities give. (Joining two segments
    with the same most probable class keeps it: the joined mean is a weighted mean of the two.)"""
    relabelled: list[list[int]] = []
    for start, end, _ in segments:
        label = int(probabilities[start:end].mean(axis=0).argmax())
        if relabelled and relabelled[-1][2] == label:
            relabelled[-1][1] = end
        else:
            relabelled.append([start, end, label])
    return relabelled


def build_timeline(
    probabilities: np.ndarray,
    weights: np.ndarray,
    id2label: dict[int, str],
    frame_duration: float,
    duration: float,
    smoothing: str = "median",
    smoothing_frames: int = 1,
    min_segment_frames: int = 1,
    temperature: float = 1.0,
) -> tuple[list[dict], np.ndarray]:
    """Frames → segments of one dominant emotion: runs of the smoothed frames' most probable class, runs shorter than
    `min_segment_frames` absorbed by a neighbour, then each segment labelled with the most probable class of its mean
    smoothed distribution (`label_by_mean`).

    Args:
        probabilities: (T, C) frame distributions; weights: (T,) α.
        frame_duration: seconds per frame (hop / sampling rate); duration: seconds of audio.
        temperature: the calibration temperature T of the result (fitted on utterance logits; the frames share the
            utterance classifier); the segments' `prob_<class>` are their mean distribution p put on its scale,
            p^(1/T) normalised (`tempered`), as softmax(logits / T) puts a softmax. Segments and labels do not
            depend on it: they are cut on the uncalibrated frames (averaging flattened distributions could change a
            label: the mean of softmax(z / T) does not keep its argmax as T grows), and tempering keeps the argmax,
            so a segment's `predicted` is still the most probable class of the probabilities it shows.
    Returns:
        The segments {"start_s", "end_s", "predicted", "prob_<class>"..., "weight"} (times in seconds on the
        frame grid, except that the last one ends at `duration`, since the conv stack yields no frame for the final
        < receptive-field samples; `prob_<class>` the mean smoothed distribution over the segment, `predicted` its
        most probable class; `weight` the mean α) and the smoothed (T, C) frames (uncalibrated).
    """
    classes = [id2label[c] for c in range(probabilities.shape[1])]
    smoothed = smooth_frames(probabilities, smoothing, smoothing_frames)
    segments = merge_short_segments(label_runs(smoothed.argmax(axis=-1)), smoothed, min_segment_frames)
    segments = label_by_mean(segments, smoothed)
    timeline = []
    for index, (start, end, _) in enumerate(segments):
        mean = smoothed[start:end].mean(axis=0)
        timeline.append(
            {
                "start_s": round(start * frame_duration, 6),
                "end_s": round(duration if index == len(segments) - 1 else end * frame_duration, 6),
                # `predicted` = label_by_mean's class (tempering keeps the argmax)
                **prediction_record(tempered(mean / mean.sum(), temperature), classes),
                "weight": float(weights[start:end].mean()),
            }
        )
    return timeline, smoothed
