"""Plot of a frame-level emotion timeline: waveform with segments, stacked emotion probabilities, and α.

Used by `python -m modeling.pipeline_frame_aligned --plot out.png`; kept apart from `timeline.py` so the pipeline
(which
may be shipped to the Hub as remote code) does not need matplotlib.
"""

import math
import os

import matplotlib


matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..audio import TARGET_SAMPLING_RATE, iter_audio_blocks, load_audio  # noqa: E402
from ..prediction_fields import PREDICTED, probabilities_of, probability_field  # noqa: E402


# Fixed colours for the usual emotion names, so every plot reads the same; other labels get tab10 colours.
EMOTION_COLORS = {
    "angry": "#d62728",
    "anger": "#d62728",
    "ang": "#d62728",
    "happy": "#f2b701",
    "happiness": "#f2b701",
    "hap": "#f2b701",
    "joy": "#f2b701",
    "sad": "#1f77b4",
    "sadness": "#1f77b4",
    "neutral": "#8c8c8c",
    "neu": "#8c8c8c",
    "fear": "#9467bd",
    "fearful": "#9467bd",
    "disgust": "#2ca02c",
    "surprise": "#ff7f0e",
    "surprised": "#ff7f0e",
    "calm": "#17becf",
}


def emotion_colors(labels: list[str]) -> dict[str, str]:
    palette = plt.get_cmap("tab10").colors
    spare = iter(c for c in palette if matplotlib.colors.to_hex(c) not in EMOTION_COLORS.values())
    return {label: EMOTION_COLORS.get(label.lower()) or matplotlib.colors.to_hex(next(spare)) for label in labels}


def waveform_envelope(source, duration: float, num_bins: int = 3000, sampling_rate: int = TARGET_SAMPLING_RATE):
    """Min/max envelope of a waveform in `num_bins` bins, streaming files block by block (bounded memory).

    Args:
        source: a path (streamed), or anything `load_audio` accepts (an array must be at `sampling_rate`).
        duration: seconds (from the pipeline result), used to size the bins.
    Returns:
        times (N,), low (N,), high (N,) in seconds / sample units.
    """
    if isinstance(source, (str, os.PathLike)):
        blocks = iter_audio_blocks(source, target_sampling_rate=sampling_rate)
    else:
        blocks = [load_audio(source, sampling_rate, target_sampling_rate=sampling_rate)]
    bin_size = max(1, math.ceil(duration * sampling_rate / num_bins))
    lows, highs, carry = [], [], np.zeros(0, dtype=np.float32)
    for block in blocks:
        carry = np.concatenate([carry, block])
        full = len(carry) // bin_size * bin_size
        if full:
            bins = carry[:full].reshape(-1, bin_size)
            lows.append(bins.min(axis=1))
            highs.append(bins.max(axis=1))
            carry = carry[full:]
    if len(carry):
        lows.append(carry.min(keepdims=True))
        highs.append(carry.max(keepdims=True))
    low, high = np.concatenate(lows), np.concatenate(highs)
    return (np.arange(len(low)) + 0.5) * bin_size / sampling_rate, low, high


def frame_steps(values: np.ndarray, frame_duration: float, duration: float):
    """(T, ...) per-frame values → x (2T,), y (2T, ...) drawing each frame as a flat step over its 20 ms.

    The last frame's step runs to `duration` (the timeline's last segment does the same).
    """
    edges = np.arange(len(values) + 1) * frame_duration
    edges[-1] = max(edges[-1], duration)
    return np.repeat(edges, 2)[1:-1], np.repeat(np.asarray(values), 2, axis=0)


def plot_timeline(result: dict, source=None, path: str = "timeline.png", title: str | None = None):
    """Draw a pipeline result (called with `return_frames=True`) and save it as a PNG.

    Panels: (1) the waveform with the timeline's segments shaded in their emotion's colour, (2) the stacked
    per-emotion frame probabilities (smoothed, as used for the segments), (3) α relative to uniform (α_t × T: above 1
    the frame weighs more than average in the utterance decision). Window boundaries of long inputs are dotted.

    Args:
        result: one output of `FrameAlignedEmotionPipeline` with its "frames".
        source: the audio (path or 16 kHz array) for the waveform panel; `None` leaves that panel without it.
        path: where to write the PNG.
    Returns:
        The matplotlib figure (already saved and closed).
    """
    if "frames" not in result:
        raise ValueError("plot_timeline needs the per-frame arrays: call the pipeline with return_frames=True.")
    frames = result["frames"]
    labels = list(frames["classes"])
    colors = emotion_colors(labels)
    duration = result["duration_s"]

    figure, (wave_ax, prob_ax, alpha_ax) = plt.subplots(
        3, 1, figsize=(12, 6.5), sharex=True, gridspec_kw={"height_ratios": [1.2, 2.0, 1.0]}
    )
    if source is not None:
        times, low, high = waveform_envelope(source, duration)
        wave_ax.fill_between(times, low, high, color="#333333", linewidth=0.4)
        peak = max(float(np.abs(np.concatenate([low, high])).max()), 1e-3)
        wave_ax.set_ylim(-1.15 * peak, 1.35 * peak)
    wave_ax.set_yticks([])
    for segment in result["timeline"]:
        predicted = segment[PREDICTED]
        wave_ax.axvspan(segment["start_s"], segment["end_s"], color=colors[predicted], alpha=0.22, linewidth=0)
        if segment["end_s"] - segment["start_s"] > 0.06 * duration:
            wave_ax.text(
                (segment["start_s"] + segment["end_s"]) / 2,
                0.93,
                f"{predicted} {segment[probability_field(predicted)]:.2f}",
                transform=wave_ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=8,
            )
    wave_ax.set_ylabel("waveform")

    x, smoothed = frame_steps(frames["smoothed"], result["frame_duration_s"], duration)
    prob_ax.stackplot(x, smoothed.T, colors=[colors[label] for label in labels], labels=labels, alpha=0.9)
    prob_ax.set_ylim(0, 1)
    prob_ax.set_ylabel("p(emotion)")
    prob_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)

    relative = np.asarray(frames["weights"]) * len(frames["weights"])  # α × T: 1 = uniform attention
    x, relative = frame_steps(relative, result["frame_duration_s"], duration)
    alpha_ax.fill_between(x, 0, relative, color="#444444", alpha=0.35, linewidth=0)
    alpha_ax.plot(x, relative, color="#222222", linewidth=0.8)
    alpha_ax.axhline(1.0, color="#999999", linewidth=0.6, linestyle="--")
    alpha_ax.set_ylim(0, max(1.5, float(relative.max()) * 1.1) if len(relative) else 1.5)
    alpha_ax.set_ylabel("α × T")
    alpha_ax.set_xlabel("time (s)")
    alpha_ax.set_xlim(0, duration)

    if len(result["windows"]) > 1:
        for part in result["windows"][1:]:
            for ax in (wave_ax, prob_ax, alpha_ax):
                ax.axvline(part["start_s"], color="#555555", linewidth=0.6, linestyle=":")

    ranked = sorted(probabilities_of(result).items(), key=lambda item: -item[1])
    distribution = ", ".join(f"{name} {p:.2f}" for name, p in ranked)
    if title is None:
        title = os.path.basename(str(source)) if isinstance(source, (str, os.PathLike)) else "audio"
    wave_ax.set_title(f"{title}  —  {result[PREDICTED]} ({distribution})", fontsize=10, loc="left")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return figure


def _clock(seconds: float, _=None) -> str:
    minutes, whole = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole:02d}" if hours else f"{minutes}:{whole:02d}"


def plot_lanes(records: list[dict], classes: list[str], path: str, duration: float, title: str | None = None):
    """Who felt what when: one lane per speaker along the recording, each segment outlined, filled with its frame
    timeline coloured by emotion, the shade the probability of the shown emotion (pale = 1/C, i.e. no better than
    chance; full = 1). The segment's utterance-level emotion ("anger 0.78") is written above it when there is
    room (the lanes are drawn top-down: lane 0 on top).

    Args:
        records: per-segment results (`pipeline(audio, segments=...)`), timelines in recording seconds.
        classes: the model's classes (legend order); duration: the recording's length in seconds.
    Returns:
        The matplotlib figure (already saved and closed).
    """
    colors = emotion_colors(classes)
    speakers = sorted({r["speaker"] or "speech" for r in records}) or ["speech"]
    figure, ax = plt.subplots(figsize=(13, 1.4 + 0.75 * len(speakers)))
    chance = 1.0 / len(classes)
    hidden = 0  # segment labels left out for want of room (said in the title: the files hold every one)
    for record in records:
        lane = speakers.index(record["speaker"] or "speech")
        for part in record["timeline"]:
            p = part[probability_field(part[PREDICTED])]
            shade = 0.12 + 0.88 * min(1.0, max(0.0, (p - chance) / (1.0 - chance)))
            ax.broken_barh(
                [(part["start_s"], part["end_s"] - part["start_s"])],
                (lane - 0.35, 0.7),
                color=colors[part[PREDICTED]],
                alpha=shade,
                linewidth=0,
            )
        width = record["end_s"] - record["start_s"]
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (record["start_s"], lane - 0.35), width, 0.7, fill=False, edgecolor="#222222", linewidth=0.6
            )
        )
        label = f"{record[PREDICTED]} {record[probability_field(record[PREDICTED])]:.2f}"
        if width > 0.0065 * len(label) * duration:  # room for the text (7 pt on a 13-inch figure)
            ax.text(record["start_s"] + width / 2, lane - 0.38, label, ha="center", va="bottom", fontsize=7)
        else:
            hidden += 1
    ax.set_yticks(range(len(speakers)), speakers)
    ax.set_ylim(len(speakers) - 0.4, -0.6)
    ax.set_xlim(0, duration)
    if duration > 120:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_clock))
    ax.set_xlabel("time (h:mm:ss)" if duration >= 3600 else "time (m:ss)" if duration > 120 else "time (s)")
    handles = [matplotlib.patches.Patch(color=colors[name], label=name) for name in classes]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
        frameon=False,
        # the fresh-user try read a label that disagreed with the colours below it as a bug: say what each one is
        title="colour: each frame's emotion\nshade = probability\n(pale: chance, full: 1)\nabove a segment: the\n"
        "whole segment's emotion\n(may differ from its frames)",
        title_fontsize=7,
    )
    ax.set_title(
        f"{title or 'recording'}  —  {len(records)} segments, {len(speakers)} lane(s)"
        + (f"  ({hidden} segment labels too narrow to print: see the CSV/RTTM)" if hidden else ""),
        fontsize=10,
        loc="left",
    )
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return figure
