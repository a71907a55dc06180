"""modeling/timeline.py: the "frame-aligned-emotion" pipeline on real speech, its timeline, long inputs in windows,
length-sorted batches, input handling, the CLI (JSON + PNG) and loading from a Hub id as remote code.

The models are tiny and random (their classifier adjusted so that frames get varied, confident emotions); the checks
compare the pipeline's numbers with the model's own outputs, so the weights' quality does not matter.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers import NEMO4, POLISH3, POLISH3_LABELS, layer_norm_overrides, polish3_clips, tiny_config
from hub_server import HubServer
from huggingface_hub import HfApi, constants
from transformers import pipeline

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import AudioInputError, load_audio
from modeling.cli.timeline import main
from modeling.collator import make_feature_extractor
from modeling.frames import frame_geometry, frames_for_samples
from modeling.pipeline_frame_aligned import FrameAlignedEmotionPipeline
from modeling.prediction_fields import probabilities_of
from modeling.publishing.remote_code import hub_pipeline_files
from modeling.timeline_segments import (
    WindowPrediction,
    build_timeline,
    iter_windows,
    merge_short_segments,
    smooth_frames,
    stitch_windows,
)


SR = 16_000
# wav2vec2's conv stack (narrow): 320 samples = 20 ms per frame, receptive field 400 samples.
WAV2VEC2_CONV = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))
FRAME = 0.02
NEMO4_LABELS = ["angry", "happy", "neutral", "sad"]


def save_model(directory, **overrides) -> Wav2Vec2ForFrameAlignedClassification:
    """A tiny stage-2 model saved with its feature extractor, as training saves checkpoints."""
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**{**WAV2VEC2_CONV, **overrides})).eval()
    # A random classifier gives ~uniform frames, or one class everywhere once scaled: scale it, and centre its frame
    # logits on a real clip, so that frames of real speech get confident and varied emotions.
    inputs = make_feature_extractor()(load_audio(polish3_clips(1)[0][0]), sampling_rate=SR, return_tensors="pt")
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
        model.classifier.bias.sub_(model(**inputs).frame_logits[0].mean(0))
    model.save_pretrained(directory)
    make_feature_extractor().save_pretrained(directory)
    return model


def model_outputs(model, waveform: np.ndarray):
    """The model's own q (C,), p_t (T, C) and α (T,) for one waveform."""
    inputs = make_feature_extractor()(waveform, sampling_rate=SR, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    q, p, alpha = out.logits.softmax(-1)[0], out.frame_logits.softmax(-1)[0], out.frame_weights[0]
    return q.double().numpy(), p.double().numpy(), alpha.double().numpy()


def assert_contiguous(timeline: list[dict], duration: float):
    assert timeline[0]["start_s"] == 0.0
    assert timeline[-1]["end_s"] == pytest.approx(duration, abs=1e-6)
    for left, right in zip(timeline, timeline[1:]):
        assert left["end_s"] == right["start_s"] and left["predicted"] != right["predicted"]
    for boundary in [segment["start_s"] for segment in timeline]:
        assert boundary / FRAME == pytest.approx(round(boundary / FRAME), abs=1e-6)  # on the 20 ms frame grid
    for segment in timeline:
        assert sum(probabilities_of(segment).values()) == pytest.approx(1.0, abs=1e-9)


def segments(result: dict) -> list[tuple]:
    return [(s["start_s"], s["end_s"], s["predicted"]) for s in result["timeline"]]


def same_results(a: dict, b: dict, atol: float = 1e-5):
    assert a["predicted"] == b["predicted"]
    for label, score in probabilities_of(a).items():
        assert probabilities_of(b)[label] == pytest.approx(score, abs=atol)
    assert segments(a) == segments(b)


@pytest.fixture(scope="module")
def layer_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("layer_model")
    return directory, save_model(directory, **layer_norm_overrides())


@pytest.fixture(scope="module")
def group_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("group_model")
    return directory, save_model(directory)  # feat_extract_norm="group": no attention mask in the backbone


@pytest.fixture(scope="module")
def timeline(layer_model):
    return pipeline("frame-aligned-emotion", model=str(layer_model[0]), device="cpu")


@pytest.fixture(scope="module")
def sixty_seconds() -> tuple[np.ndarray, list[str]]:
    """60 s of real speech: polish3 words cycling anger → fear → neutral (the emotion of each clip returned too)."""
    with open(POLISH3 / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    by_label = {label: [row for row in rows if row["label"] == label] for label in POLISH3_LABELS}
    pieces, labels, total, i = [], [], 0, 0
    while total < 60 * SR:
        row = by_label[POLISH3_LABELS[i % 3]][i // 3]
        pieces.append(load_audio(POLISH3 / row["file"]))
        labels.append(row["label"])
        total += len(pieces[-1])
        i += 1
    return np.concatenate(pieces)[: 60 * SR], labels


# ----------------------------------------------------------------------------------------------------------------
# Frames and segments
# ----------------------------------------------------------------------------------------------------------------


def test_frame_rate_and_receptive_field_come_from_the_conv_stack(layer_model, tmp_path):
    model = layer_model[1]
    assert frame_geometry(model.config) == (320, 400)
    coarse = tiny_config(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 8))  # 160 samples
    assert frame_geometry(coarse) == (160, 1 + 9 + 2 * 5 + 2 * 20)
    for config in (model.config, coarse):
        hop, field = frame_geometry(config)
        reference = Wav2Vec2ForFrameAlignedClassification(config)
        for length in (field, field + 1, field + hop - 1, field + hop, 12_345, 16_000):
            assert frames_for_samples(length, hop, field) == int(reference._get_feat_extract_output_lengths(length))

    directory = tmp_path / "coarse"
    Wav2Vec2ForFrameAlignedClassification(coarse).save_pretrained(directory)
    make_feature_extractor().save_pretrained(directory)
    result = pipeline("frame-aligned-emotion", model=str(directory))(polish3_clips(1)[0][0], smoothing="none")
    assert result["frame_duration_s"] == 0.01
    for segment in result["timeline"][1:]:
        assert segment["start_s"] / 0.01 == pytest.approx(round(segment["start_s"] / 0.01), abs=1e-6)


def test_timeline_of_a_real_clip_matches_the_models_frames(timeline, layer_model):
    path = polish3_clips(4)[-1][0]  # the longest of four
    waveform = load_audio(path)
    q, p, alpha = model_outputs(layer_model[1], waveform)

    result = timeline(path, smoothing="none", min_segment_s=0, return_frames=True)
    assert isinstance(timeline, FrameAlignedEmotionPipeline) and timeline.frame_duration == FRAME
    assert result["duration_s"] == pytest.approx(len(waveform) / SR)
    assert result["predicted"] == POLISH3_LABELS[int(q.argmax())] and result[
        f"prob_{result['predicted']}"
    ] == pytest.approx(q.max(), abs=1e-5)
    assert probabilities_of(result) == pytest.approx(dict(zip(POLISH3_LABELS, q)), abs=1e-5)
    np.testing.assert_allclose(result["frames"]["probabilities"], p, atol=1e-5)
    np.testing.assert_allclose(result["frames"]["weights"], alpha, atol=1e-6)
    assert result["frames"]["weights"].sum() == pytest.approx(1.0, abs=1e-9) and result["num_frames"] == len(p)
    assert len(result["windows"]) == 1 and result["windows"][0]["share"] == 1.0

    segments = result["timeline"]
    assert_contiguous(segments, result["duration_s"])
    assert len(segments) > 1  # the scaled classifier does change its mind within the word
    frame_labels = p.argmax(-1)
    for segment in segments:
        first, last = round(segment["start_s"] / FRAME), min(round(segment["end_s"] / FRAME), len(p))
        label = POLISH3_LABELS.index(segment["predicted"])
        assert (frame_labels[first:last] == label).all()  # no smoothing: a segment is a run of one argmax
        assert segment[f"prob_{segment['predicted']}"] == pytest.approx(p[first:last, label].mean(), abs=1e-5)
        assert segment["weight"] == pytest.approx(alpha[first:last].mean(), abs=1e-7)
        mean = dict(zip(POLISH3_LABELS, p[first:last].mean(0)))
        assert probabilities_of(segment) == pytest.approx(mean, abs=1e-5)

    smoothed = timeline(path, smoothing="median", smoothing_window_s=0.1, min_segment_s=0.2, return_frames=True)
    assert_contiguous(smoothed["timeline"], result["duration_s"])
    assert len(smoothed["timeline"]) == 1 or all(s["end_s"] - s["start_s"] >= 0.2 - 1e-9 for s in smoothed["timeline"])
    np.testing.assert_allclose(smoothed["frames"]["smoothed"].sum(-1), 1.0, atol=1e-9)
    assert probabilities_of(smoothed) == probabilities_of(result)  # utterance result unchanged


def test_smoothing_and_short_segment_merging():
    flip = np.tile([0.8, 0.1, 0.1], (9, 1))
    flip[4] = [0.1, 0.8, 0.1]  # one frame of another emotion
    assert (smooth_frames(flip, "median", 3).argmax(-1) == 0).all()
    assert (smooth_frames(flip, "none", 3) == flip).all()
    mean = smooth_frames(flip, "mean", 3)
    np.testing.assert_allclose(mean[4], flip[3:6].mean(0))
    np.testing.assert_allclose(mean.sum(-1), 1.0)

    probabilities = np.tile([0.5, 0.2, 0.3], (30, 1))
    probabilities[10:12] = [0.2, 0.45, 0.35]  # a short "1": class 2 is more probable there than class 0
    segments = [[0, 10, 0], [10, 12, 1], [12, 30, 2]]
    assert merge_short_segments(segments, probabilities, 3) == [[0, 10, 0], [10, 30, 2]]
    assert merge_short_segments([[0, 10, 0], [10, 12, 1], [12, 30, 0]], probabilities, 3) == [[0, 30, 0]]
    assert merge_short_segments(segments, probabilities, 1) == segments
    assert merge_short_segments([[0, 2, 1]], probabilities[:2], 5) == [[0, 2, 1]]  # nothing to merge with


def test_a_segment_is_labelled_with_its_most_probable_class():
    """Issue 19: after a short segment was absorbed, the segment kept its neighbour's label although its own mean
    distribution favoured another class (`0.00–0.40 neutral 0.33` while its scores gave anger 0.363)."""
    id2label = {0: "neutral", 1: "anger"}
    probabilities = np.tile([0.55, 0.45], (10, 1))
    probabilities[:2] = [0.1, 0.9]  # 2 frames of anger, then 8 frames leaning neutral
    timeline, _ = build_timeline(probabilities, np.full(10, 0.1), id2label, 0.02, 0.2, "none", 1, 5)
    # one segment (the 2 frames are too short); its mean is anger (2·0.9 + 8·0.45) / 10 = 0.54 vs neutral 0.46
    assert len(timeline) == 1
    assert timeline[0]["predicted"] == "anger" and timeline[0]["prob_anger"] == pytest.approx(0.54)

    rng = np.random.default_rng(0)  # and on random frames, with every smoothing
    for smoothing in ("none", "mean", "median"):
        for trial in range(20):
            frames = rng.dirichlet(np.full(3, 0.7), size=200)
            timeline, smoothed = build_timeline(
                frames, np.full(200, 1 / 200), dict(enumerate("abc")), 0.02, 4.0, smoothing, 5, 1 + trial
            )
            for segment in timeline:
                first, last = round(segment["start_s"] / 0.02), round(segment["end_s"] / 0.02)
                mean = smoothed[first:last].mean(axis=0)
                assert segment["predicted"] == "abc"[int(mean.argmax())], (smoothing, trial, segment)
            labels = [segment["predicted"] for segment in timeline]
            assert all(a != b for a, b in zip(labels, labels[1:]))  # neighbours differ: equal ones are one segment


# ----------------------------------------------------------------------------------------------------------------
# Long inputs
# ----------------------------------------------------------------------------------------------------------------


def test_windows_stream_with_bounded_lookahead():
    signal = np.arange(99_999, dtype=np.float32)
    consumed = []

    def blocks():
        for start in range(0, len(signal), 7_000):
            consumed.append(start + 7_000)
            yield signal[start : start + 7_000]

    windows = iter_windows(blocks(), window=20_000, step=16_000, hop=320)
    first_start, first = next(windows)
    assert first_start == 0 and consumed[-1] <= 20_000 + 7_000  # the first window came before the rest was read
    windows = [(first_start, first)] + list(windows)
    starts = [start for start, _ in windows]
    assert starts == [0, 16_000, 32_000, 48_000, 64_000, 79_680]  # the last one starts on the grid, ≤ len − window
    for start, window in windows[:-1]:
        assert len(window) == 20_000 and (window == signal[start : start + 20_000]).all()
    # The last one runs to the signal's end, so it gives the input's final frame: window + (len − window) % hop
    # samples, at most window + hop − 1 (memory stays bounded).
    last_start, last = windows[-1]
    assert len(last) == 20_000 + (99_999 - 20_000) % 320 == 20_319 <= 20_000 + 320 - 1
    assert (last == signal[last_start:]).all()
    assert list(iter_windows([signal[:5_000]], 20_000, 16_000, 320))[0][1].shape == (5_000,)  # short: one window


def test_sixty_seconds_run_in_windows_and_the_timeline_covers_them(timeline, sixty_seconds):
    audio, clip_labels = sixty_seconds
    assert len(set(clip_labels)) == 3 and len(audio) == 60 * SR
    result = timeline(
        audio, sampling_rate=SR, window_length_s=20, window_overlap_s=4, batch_size=2, return_frames=True
    )

    assert [(c["start_s"], c["end_s"]) for c in result["windows"]] == [(0, 20), (16, 36), (32, 52), (40, 60)]
    shares = np.array([c["share"] for c in result["windows"]])
    assert shares.sum() == pytest.approx(1.0)
    assert result["duration_s"] == 60.0
    assert_contiguous(result["timeline"], 60.0)
    frames = result["frames"]
    assert len(frames["weights"]) == result["num_frames"] == frames_for_samples(len(audio), 320, 400) == 2999
    assert frames["weights"].sum() == pytest.approx(1.0, abs=1e-9)
    assert frames["classes"] == POLISH3_LABELS and frames["probabilities"].shape == (2999, 3)  # columns in class order
    per_window = np.array([[probabilities_of(c)[label] for label in POLISH3_LABELS] for c in result["windows"]])
    overall = shares @ per_window  # duration-weighted
    assert probabilities_of(result) == pytest.approx(dict(zip(POLISH3_LABELS, overall)), abs=1e-9)

    # A frame comes from the window it is most central in, exactly as that window alone predicts it; within a window
    # α keeps the model's proportions.
    for window_start, frame in [(0, 100), (16, 1250), (40, 2900)]:
        alone = timeline(audio[window_start * SR : (window_start + 20) * SR], window_length_s=0, return_frames=True)
        local = frame - window_start * SR // 320
        np.testing.assert_allclose(frames["probabilities"][frame], alone["frames"]["probabilities"][local], atol=1e-5)
        ratio = frames["weights"][frame] / frames["weights"][frame + 1]
        alone_alpha = alone["frames"]["weights"]
        assert ratio == pytest.approx(alone_alpha[local] / alone_alpha[local + 1], rel=1e-4)
    assert len(timeline(audio[: 25 * SR], window_length_s=0)["windows"]) == 1  # 0: never cut into windows


def test_a_long_file_streams_and_equals_the_in_memory_result(timeline, sixty_seconds, tmp_path):
    """A 44.1 kHz stereo file streams block by block (down-mixed, resampled) with the result of decoding it whole."""
    audio = sixty_seconds[0]
    stereo = soxr.resample(audio, SR, 44_100)[:, None] * np.array([1.0, 0.5], dtype=np.float32)
    path = tmp_path / "long stereo.flac"
    sf.write(path, stereo, 44_100, subtype="PCM_16")
    streamed = timeline(str(path), batch_size=4, return_frames=True)
    in_memory = timeline(load_audio(path), sampling_rate=SR, batch_size=4, return_frames=True)
    same_results(streamed, in_memory, atol=1e-6)
    np.testing.assert_allclose(streamed["frames"]["probabilities"], in_memory["frames"]["probabilities"], atol=1e-6)
    assert streamed["duration_s"] == pytest.approx(60.0, abs=1e-3) and len(streamed["windows"]) == 4


def most_central_owner(offsets: list[int], counts: list[int]) -> np.ndarray:
    """Reference stitching, frame by frame: the window in which frame t is most central, i.e. with the most frames
    of context on its shorter side, min(t − first frame, last frame − t); on a tie the later window (ownership
    changes at the middle of an overlap, as `stitch_windows` documents)."""
    total = max(offset + count for offset, count in zip(offsets, counts))
    owner = np.full(total, -1)
    for t in range(total):
        best = -1
        for k, (offset, count) in enumerate(zip(offsets, counts)):
            if offset <= t < offset + count:
                context = min(t - offset, offset + count - 1 - t)
                if best < 0 or context >= best:
                    best, owner[t] = context, k
    assert (owner >= 0).all(), "a frame no window covers"
    return owner


def reference_stitch(offsets, counts, probabilities, alphas, utterances):
    """By hand from per-window outputs: p_t and α_t of the owning window, α renormalised per window to its share of
    the frames, the utterance distribution weighted by those shares."""
    owner = most_central_owner(offsets, counts)
    total = len(owner)
    p = np.stack([probabilities[k][t - offsets[k]] for t, k in enumerate(owner)])
    shares = np.bincount(owner, minlength=len(offsets)) / total
    alpha = np.empty(total)
    for k in range(len(offsets)):
        owned = np.flatnonzero(owner == k)
        alpha[owned] = alphas[k][owned - offsets[k]] / alphas[k][owned - offsets[k]].sum() * shares[k]
    utterance = sum(share * q for share, q in zip(shares, utterances))
    return owner, p, alpha, utterance / utterance.sum(), shares


def boundary_probes(offsets, counts) -> list[int]:
    """Frames where a stitching rule can go wrong: each later window's first frames, the middle of every overlap
    (±2) and each earlier window's last frames."""
    probes = set()
    for k in range(len(offsets) - 1):
        start, end = offsets[k + 1], offsets[k] + counts[k]  # the overlap of windows k and k+1: [start, end)
        middle = (start + end) // 2
        probes |= {start, start + 1, middle - 2, middle - 1, middle, middle + 1, middle + 2, end - 2, end - 1}
    return sorted(t for t in probes if 0 <= t < offsets[-1] + counts[-1])


@pytest.mark.parametrize(
    "seconds, window_s, overlap_s",
    [
        (60.0, 20.0, 4.0),  # the pipeline's default windows; the last one ends at the input's end
        (25.0, 20.0, 4.0),  # two windows overlapping by 15 s
        (61.37, 5.0, 1.0),  # many short windows, an odd length
        (30.0, 20.0, 15.0),  # step 5 s: three windows cover the middle frames
        (10.01, 2.0, 0.0),  # overlap = one receptive field: consecutive windows share one frame (the last, 91)
    ],
)
def test_stitching_takes_each_frame_from_the_window_it_is_most_central_in(seconds, window_s, overlap_s):
    """`stitch_windows` on synthetic windows whose frames say where they come from (window k, local frame i), against
    the frame-by-frame reference, on every frame, for the geometries the pipeline produces (its window/step rule)."""
    hop, field = 320, 400
    window = int(window_s * SR)
    overlap = max(int(overlap_s * SR), field)
    step = max(hop, (window - overlap) // hop * hop)  # as FrameAlignedEmotionPipeline.window_and_step
    windows = list(iter_windows([np.zeros(int(seconds * SR), dtype=np.float32)], window, step, hop))
    assert len(windows) >= 2
    rng = np.random.default_rng(0)
    predictions = []
    for k, (start, audio) in enumerate(windows):
        count = frames_for_samples(len(audio), hop, field)
        identity = np.stack([np.full(count, k), np.arange(count)], axis=1).astype(np.float64)
        q = rng.dirichlet(np.ones(2))
        predictions.append(WindowPrediction(start, len(audio), q, identity, rng.uniform(0.1, 1.0, count)))
    offsets = [part.start // hop for part in predictions]
    counts = [len(part.frame_weights) for part in predictions]

    probabilities, weights, utterance, shares = stitch_windows(predictions, hop)
    owner, p, alpha, expected_utterance, expected_shares = reference_stitch(
        offsets,
        counts,
        [part.frame_probabilities for part in predictions],
        [part.frame_weights for part in predictions],
        [part.probabilities for part in predictions],
    )
    assert len(probabilities) == len(owner) == frames_for_samples(int(seconds * SR), hop, field)  # every frame
    for t in boundary_probes(offsets, counts):  # the frames a wrong rule gets wrong, reported one by one
        assert tuple(probabilities[t]) == (owner[t], t - offsets[owner[t]]), f"frame {t}"
    np.testing.assert_array_equal(probabilities[:, 0], owner)
    np.testing.assert_array_equal(probabilities[:, 1], np.arange(len(owner)) - np.array(offsets)[owner])
    np.testing.assert_allclose(shares, expected_shares, rtol=0, atol=1e-12)
    np.testing.assert_allclose(weights, alpha, rtol=1e-12, atol=0)
    np.testing.assert_allclose(utterance, expected_utterance, rtol=1e-12)


def test_window_boundaries_of_a_long_input_match_each_window_run_alone(timeline, layer_model, sixty_seconds):
    """60 s in windows (0–20, 16–36, 32–52, 40–60 s) through the pipeline, against a reference built by hand: the
    model run on each window alone, every frame taken from the window it is most central in. Checked on every frame,
    and named at the frames next to window starts, ends and overlap middles, where the windows disagree."""
    audio = sixty_seconds[0]
    result = timeline(
        audio, sampling_rate=SR, window_length_s=20, window_overlap_s=4, batch_size=2, return_frames=True
    )
    starts = [round(part["start_s"] * SR) for part in result["windows"]]
    assert starts == [0, 16 * SR, 32 * SR, 40 * SR]
    alone = [model_outputs(layer_model[1], audio[start : start + 20 * SR]) for start in starts]
    offsets = [start // 320 for start in starts]
    counts = [len(p) for _, p, _ in alone]
    owner, p, alpha, utterance, shares = reference_stitch(
        offsets, counts, [p for _, p, _ in alone], [a for _, _, a in alone], [q for q, _, _ in alone]
    )
    frames = result["frames"]
    assert result["num_frames"] == len(owner) == 2999
    atol = 1e-5  # a batch of two windows vs one window alone

    probes = boundary_probes(offsets, counts)
    for t in probes:
        others = [k for k in range(len(offsets)) if k != owner[t] and offsets[k] <= t < offsets[k] + counts[k]]
        # the windows really disagree here, so a frame from the wrong window cannot pass for the right one
        gaps = [np.abs(alone[k][1][t - offsets[k]] - p[t]).max() for k in others]
        # the windows really disagree here (by ≥ 2e-4 at the overlap middles, up to 0.3 near window edges), so a
        # frame taken from the wrong window, even one frame off, cannot pass for the right one
        assert others and min(gaps) > 10 * atol, (t, gaps)
        np.testing.assert_allclose(frames["probabilities"][t], p[t], atol=atol, err_msg=f"frame {t}")
    np.testing.assert_allclose(frames["probabilities"], p, atol=atol)
    np.testing.assert_allclose(frames["weights"], alpha, rtol=1e-3, atol=1e-9)
    assert [part["share"] for part in result["windows"]] == pytest.approx(list(shares), abs=1e-12)
    assert probabilities_of(result) == pytest.approx(dict(zip(POLISH3_LABELS, utterance)), abs=1e-5)


@pytest.mark.parametrize(
    "num_samples",
    [
        20 * SR + 1,  # just over one window: one window, to the end
        20 * SR + 319,  # just under a hop over: still one window, the longest one (window + hop − 1)
        20 * SR + 320,  # exactly a hop over: two windows
        25 * SR,  # (len − window) % hop = 0: the last window is exactly `window` samples
        25 * SR + 199,  # (len − window) % hop + (window − receptive field) % hop = 439 ≥ hop: the last frame was lost
        25 * SR + 200,  # the pipeline test's length below
        36 * SR,  # the last window starts at a step (16 s) and is exactly `window` samples
        36 * SR + 80,  # (len − receptive field) % hop = 0: the shortest length with 1,800 frames
        60 * SR,  # the pipeline's 60 s case
        60 * SR + 319,
    ],
)
def test_windows_yield_every_frame_of_the_whole_input(num_samples):
    """Over the windows' frames, stitched, the input's frames are exactly those of the whole input run in one go:
    frames_for_samples(len) of them, each from some window, none past the input's end."""
    hop, field, window, step = 320, 400, 20 * SR, 16 * SR  # the pipeline's default windows (20 s, 4 s overlap)
    signal = np.zeros(num_samples, dtype=np.float32)
    blocks = [signal[start : start + 7_000] for start in range(0, num_samples, 7_000)]  # streamed
    windows = list(iter_windows(blocks, window, step, hop))
    offsets = [start // hop for start, _ in windows]
    counts = [frames_for_samples(len(audio), hop, field) for _, audio in windows]
    whole = frames_for_samples(num_samples, hop, field)
    assert max(offset + count for offset, count in zip(offsets, counts)) == whole
    # How: the last window runs to the input's end (≤ window + hop − 1 samples); the others are `window` long.
    assert windows[-1][0] + len(windows[-1][1]) == num_samples
    assert all(start % hop == 0 and len(audio) <= window + hop - 1 for start, audio in windows)
    assert all(len(audio) == window for _, audio in windows[:-1])
    predictions = [
        WindowPrediction(start, len(audio), np.ones(2) / 2, np.full((count, 2), 0.5), np.ones(count))
        for (start, audio), count in zip(windows, counts)
    ]
    assert len(stitch_windows(predictions, hop)[0]) == len(most_central_owner(offsets, counts)) == whole


def test_the_pipeline_gives_the_final_frames_of_the_last_window_run_alone(timeline, layer_model, sixty_seconds):
    """25 s + 200 samples: the windows 0–20 s and 5 s–end give 1,250 frames, the count of the whole input run in one
    go; the final frames are the model's on the last window alone (which runs to the input's end)."""
    audio = sixty_seconds[0][: 25 * SR + 200]  # (len − window) % 320 = 200, (window − 400) % 320 = 240: 440 ≥ 320
    result = timeline(audio, sampling_rate=SR, window_length_s=20, window_overlap_s=4, return_frames=True)
    whole = len(model_outputs(layer_model[1], audio)[1])  # the model on the whole input in one go
    assert result["num_frames"] == len(result["frames"]["probabilities"]) == whole == 1250
    assert [(part["start_s"], part["end_s"]) for part in result["windows"]] == [(0.0, 20.0), (5.0, 25.0125)]
    last_start = 5 * SR
    _, p, alpha = model_outputs(layer_model[1], audio[last_start:])  # 20 s + 200 samples
    assert len(p) == 1250 - last_start // 320 == 1000  # the last window's frames end with the input's last frame
    np.testing.assert_allclose(result["frames"]["probabilities"][-10:], p[-10:], atol=1e-5)
    ratio = result["frames"]["weights"][-2] / result["frames"]["weights"][-1]
    assert ratio == pytest.approx(alpha[-2] / alpha[-1], rel=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# Batches
# ----------------------------------------------------------------------------------------------------------------


def mixed_inputs(sixty_seconds) -> list:
    """Real clips of different lengths (files), nemo4 sentences when present, an array, a dict, and a long input."""
    paths = [path for path, _ in polish3_clips(6)]
    if NEMO4 is not None:
        paths += sorted(str(p) for p in (NEMO4 / "audio").glob("*.flac"))[:2]
    clip = load_audio(paths[0])
    return paths + [
        clip[: len(clip) // 2],
        {"raw": soxr.resample(clip, SR, 8_000), "sampling_rate": 8_000},
        sixty_seconds[0][: 25 * SR],  # two windows
    ]


def test_batched_and_one_by_one_agree_with_a_layer_norm_backbone(timeline, sixty_seconds):
    inputs = mixed_inputs(sixty_seconds)
    one_by_one = [timeline(item, sampling_rate=SR) for item in inputs]
    batched = timeline(inputs, batch_size=4, sampling_rate=SR)
    assert len(batched) == len(inputs)
    for single, in_batch in zip(one_by_one, batched):
        same_results(single, in_batch)
    # the comparison is not between constant outputs (a random CLS output varies little; its frames do)
    assert len({segment["predicted"] for result in one_by_one for segment in result["timeline"]}) == 3
    assert len(batched[-1]["windows"]) == 2 and batched[-1]["duration_s"] == 25.0


def test_group_norm_backbones_batch_only_equal_lengths_by_default(group_model, sixty_seconds):
    """wav2vec2-base-like backbones see padding (group norm over time, attention without a mask): by default only
    equal-length inputs share a batch, so results equal one-by-one ones; `padded_batches=True` trades that for
    speed."""
    group = pipeline("frame-aligned-emotion", model=str(group_model[0]), device="cpu")
    inputs = mixed_inputs(sixty_seconds)
    one_by_one = [group(item, sampling_rate=SR) for item in inputs]
    for single, in_batch in zip(one_by_one, group(inputs, batch_size=4, sampling_rate=SR)):
        same_results(single, in_batch, atol=1e-6)
    padded = group(inputs, batch_size=4, sampling_rate=SR, padded_batches=True)
    agree = sum(a["predicted"] == b["predicted"] for a, b in zip(one_by_one, padded))
    gap = max(
        abs(probabilities_of(a)[label] - probabilities_of(b)[label])
        for a, b in zip(one_by_one, padded)
        for label in POLISH3_LABELS
    )
    print(f"group norm, padded batches: {agree}/{len(inputs)} labels as one-by-one, max |Δp| {gap:.2e}")
    assert gap > 1e-5  # padding does change a group-norm backbone's outputs: the reason for the default


# ----------------------------------------------------------------------------------------------------------------
# Inputs and errors
# ----------------------------------------------------------------------------------------------------------------


def test_every_input_form_gives_the_same_result(timeline, tmp_path):
    path = polish3_clips(2)[1][0]
    waveform = load_audio(path)
    reference = timeline(path)
    forms = [
        waveform,
        torch.from_numpy(waveform),
        {"raw": waveform, "sampling_rate": SR},
        {"array": waveform, "sampling_rate": SR},
        {"path": path},
    ]
    for item in forms:
        same_results(reference, timeline(item), atol=1e-6)
    same_results(reference, timeline((waveform * 32767).astype(np.int16), sampling_rate=SR), atol=1e-3)

    stereo_48k = tmp_path / "stereo 48k.wav"
    sf.write(stereo_48k, np.stack([soxr.resample(waveform, SR, 48_000)] * 2, axis=1), 48_000, subtype="FLOAT")
    result = timeline(str(stereo_48k))
    assert result["predicted"] == reference["predicted"]
    assert result["duration_s"] == pytest.approx(reference["duration_s"], abs=1e-3)


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: str(d / "missing.wav"), "missing.wav: file does not exist"),
        (lambda d: str(d), "is a directory"),
        (lambda d: (d / "notes.wav").write_text("text") and str(d / "notes.wav"), "notes.wav: cannot decode audio"),
        (lambda d: np.zeros(0, dtype=np.float32), "input 1: ndarray input of shape (0,): contains no samples"),
        (lambda d: np.full(800, np.nan, dtype=np.float32), "input 1: ndarray input of shape (800,): contains 800 NaN"),
        (lambda d: {"sampling_rate": SR}, "expected a dict with 'path', 'bytes', 'array' or 'raw'"),
    ],
)
def test_bad_inputs_raise_an_error_naming_them(timeline, tmp_path, make_input, message):
    good = polish3_clips(1)[0][0]
    with pytest.raises(AudioInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        timeline([good, make_input(tmp_path)], sampling_rate=SR)


def test_bad_parameters_are_rejected(timeline):
    clip = polish3_clips(1)[0][0]
    with pytest.raises(TypeError, match="top_k"):
        timeline(clip, top_k=3)
    with pytest.raises(ValueError, match="smoothing"):
        timeline(clip, smoothing="gaussian")
    with pytest.raises(ValueError, match="window_length_s"):
        timeline(clip, window_length_s=4, window_overlap_s=4)
    with pytest.raises(ValueError, match=r"window_overlap_s=-1: expected a number of seconds ≥ 0"):  # was clamped
        timeline(clip, window_overlap_s=-1)


# ----------------------------------------------------------------------------------------------------------------
# CLI, Hub
# ----------------------------------------------------------------------------------------------------------------


def test_cli_prints_a_table_and_writes_json_and_png(timeline, layer_model, tmp_path, capsys):
    import matplotlib.image

    clips = [path for path, _ in polish3_clips(3)[1:]]
    argv = [*clips, "--model", str(layer_model[0]), "--batch-size", "2"]
    argv += ["--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "t.png")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    records = json.loads((tmp_path / "out.json").read_text())
    assert [record["audio"] for record in records] == clips
    for clip, record in zip(clips, records):
        expected = timeline(clip)
        assert f"{clip}  ({expected['duration_s']:.2f} s)  →  {expected['predicted']}" in printed
        assert record["predicted"] == expected["predicted"] and "frames" not in record
        assert segments(record) == segments(expected)
    for i, clip in enumerate(clips):
        png = tmp_path / f"t-{i}-{os.path.splitext(os.path.basename(clip))[0]}.png"
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 500 and image.shape[1] > 1000 and image[..., :3].std() > 0.1  # a drawn figure

    assert main([*clips, "--model", str(layer_model[0]), "--join", "--json", str(tmp_path / "joined.json")]) == 0
    joined = json.loads((tmp_path / "joined.json").read_text())
    assert [record["audio"] for record in joined] == ["2 files joined"]
    assert joined[0]["duration_s"] == pytest.approx(sum(len(load_audio(clip)) for clip in clips) / SR, abs=1e-6)

    assert main([str(tmp_path / "nope.flac"), "--model", str(layer_model[0])]) == 2
    assert "nope.flac: no such file or folder" in capsys.readouterr().err  # refused with the arguments


def test_hub_id_with_remote_code_in_a_fresh_process(timeline, layer_model, tmp_path, monkeypatch):
    """The pipeline's `save_pretrained` ships its code; a process without the package loads it from a (loopback)
    Hub."""
    checkpoint, saved = layer_model[0], tmp_path / "saved"
    timeline.save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    impl = "pipeline_frame_aligned.FrameAlignedEmotionPipeline"
    assert config["custom_pipelines"]["frame-aligned-emotion"]["impl"] == impl
    assert {"pipeline_frame_aligned.py", "audio.py", "collator.py", "modeling_frame_aligned.py"} <= set(
        os.listdir(saved)
    )
    assert "timeline_plot.py" not in os.listdir(saved)  # no matplotlib needed by Hub users
    # the same code and config entry for publishing scripts that upload a checkpoint folder without the pipeline
    # (computed from the core's files, without importing them: publishing needs no torch)
    files = hub_pipeline_files(checkpoint)
    saved_code = {name for name in os.listdir(saved) if name.endswith(".py")}
    assert {name for name in files if name.endswith(".py")} == saved_code
    assert json.loads(files["config.json"])["custom_pipelines"] == config["custom_pipelines"]

    clip = polish3_clips(1)[0][0]
    expected = timeline(clip)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # CI exports HF_HUB_OFFLINE=1
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the loopback Hub speaks LFS only
    with HubServer() as hub:
        api = HfApi(endpoint=hub.url, token="dummy")
        api.create_repo("org/timeline")
        api.upload_folder(repo_id="org/timeline", folder_path=saved)
        script = textwrap.dedent(
            f"""
            import json, sys
            sys.modules["modeling"] = None  # installed editable here: any import of the project package fails
            from transformers import pipeline
            timeline = pipeline(model="org/timeline", trust_remote_code=True, device="cpu")
            result = timeline({clip!r})
            output = {{"class": type(timeline).__module__, "predicted": result["predicted"]}}
            output["timeline"] = result["timeline"]
            print(json.dumps(output))
            """
        )
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
        env.update(
            HF_ENDPOINT=hub.url,
            HF_HUB_DISABLE_XET="1",
            HF_TOKEN="dummy",
            HF_HOME=str(tmp_path / "hf_home"),
            NO_PROXY="127.0.0.1,localhost",
        )  # HF_ENDPOINT is read when huggingface_hub is imported: a fresh process
        completed = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["class"].startswith("transformers_modules.") and output["class"].endswith(".pipeline_frame_aligned")
    assert output["predicted"] == expected["predicted"]
    assert segments(output) == segments(expected)


@pytest.mark.skipif(NEMO4 is None, reason="nEMO (../shared/data/nemo4) not present")
def test_nemo4_sentences_of_four_emotions(tmp_path):
    directory = tmp_path / "nemo_model"
    label2id = {label: i for i, label in enumerate(NEMO4_LABELS)}
    labels = dict(num_labels=4, id2label=dict(enumerate(NEMO4_LABELS)), label2id=label2id)
    save_model(directory, **layer_norm_overrides(), **labels)
    timeline = pipeline("frame-aligned-emotion", model=str(directory), device="cpu")
    with open(NEMO4 / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    picked = [  # one female and one male speaker per emotion
        next(row for row in rows if row["label"] == label and row["speaker"] == speaker)
        for label in NEMO4_LABELS
        for speaker in ("EB0", "KS0")
    ]
    paths = [str(NEMO4 / row["file"]) for row in picked]
    batched = timeline(paths, batch_size=8)
    for path, row, result in zip(paths, picked, batched):
        same_results(timeline(path), result)
        assert set(probabilities_of(result)) == set(NEMO4_LABELS)
        assert result["duration_s"] == pytest.approx(float(row["duration_s"]), abs=2e-3)
        assert_contiguous(result["timeline"], result["duration_s"])
    joined = np.concatenate([load_audio(path) for path in paths])  # ~14 s of sentences, four emotions
    long = timeline(joined, sampling_rate=SR, window_length_s=5, window_overlap_s=1, return_frames=True)
    assert len(long["windows"]) >= 3 and long["frames"]["weights"].sum() == pytest.approx(1.0)
    assert_contiguous(long["timeline"], len(joined) / SR)
