"""One result, one probability scale: with a checkpoint saved with `calibration_temperature` T = 5, the timeline
pipeline gives softmax(logits / T) for the utterance, every window and every frame, and each segment's mean
(uncalibrated, smoothed) frame distribution p put on the same scale, p^(1/T) normalised; the segments themselves
(boundaries, labels) are those of the uncalibrated frames, so calibration changes no label. The timeline CLI's table
header (the utterance) and rows (the segments) show that one scale. `calibrated=False` gives T = 1 for all.
References: softmax by hand (numpy exp) on the model's own logits."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import layer_norm_overrides, polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.cli.timeline import main as timeline_main
from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline
from modeling.prediction_fields import probabilities_of
from modeling.timeline_segments import smooth_frames


T = 5.0
CLASSES = ["anger", "fear", "neutral"]
# wav2vec2's conv stack (narrow): 20 ms frames, so the default 0.2 s smoothing is 11 frames.
WAV2VEC2_CONV = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))


def by_hand(logits, temperature: float) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """(folder, model, joined waveform of two clips): a tiny model whose frames are confident and varied (scaled,
    centred classifier, as tests/test_timeline.py's), saved with calibration_temperature = T."""
    folder = tmp_path_factory.mktemp("calibrated_timeline")
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**WAV2VEC2_CONV, **layer_norm_overrides())).eval()
    clips = [path for path, _ in polish3_clips(3)[1:]]
    waveform = np.concatenate([load_audio(clip) for clip in clips])
    inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
        model.classifier.bias.sub_(model(**inputs).frame_logits[0].mean(0))
    model.config.calibration_temperature = T
    model.save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return folder, model, clips, waveform


def logits_of(model, waveform):
    inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    return out.logits[0].double().numpy(), out.frame_logits[0].double().numpy()


def tempered_by_hand(p, temperature: float) -> np.ndarray:
    powered = np.asarray(p, dtype=np.float64) ** (1 / temperature)
    return powered / powered.sum(axis=-1, keepdims=True)


def segment_means(result: dict, frames: np.ndarray) -> list[np.ndarray]:
    step = result["frame_duration_s"]
    spans = [(round(s["start_s"] / step), round(s["end_s"] / step)) for s in result["timeline"]]
    return [frames[start:end].mean(axis=0) for start, end in spans]


@pytest.mark.parametrize("calibrated, temperature", [(True, T), (False, 1.0)])
def test_every_probability_of_a_result_is_on_one_scale(checkpoint, calibrated, temperature):
    folder, model, _, waveform = checkpoint
    logits, frame_logits = logits_of(model, waveform)
    utterance, frames = by_hand(logits, temperature), by_hand(frame_logits, temperature)
    timeline = load_pipeline(folder, calibrated=calibrated)
    assert timeline.temperature == temperature
    result = timeline(waveform, return_frames=True)
    assert np.array(list(probabilities_of(result).values())) == pytest.approx(utterance, abs=1e-5)
    assert np.array(list(probabilities_of(result["windows"][0]).values())) == pytest.approx(utterance, abs=1e-5)
    np.testing.assert_allclose(result["frames"]["probabilities"], frames, atol=1e-5)
    smoothed = smooth_frames(by_hand(frame_logits, 1.0), "median", 11)  # uncalibrated: the segments are cut on them
    np.testing.assert_allclose(result["frames"]["smoothed"], tempered_by_hand(smoothed, temperature), atol=1e-5)
    assert len(result["timeline"]) > 2
    for segment, mean in zip(result["timeline"], segment_means(result, smoothed)):
        shown = tempered_by_hand(mean / mean.sum(), temperature)
        assert np.array(list(probabilities_of(segment).values())) == pytest.approx(shown, abs=1e-5)
        assert segment["predicted"] == CLASSES[int(mean.argmax())] == CLASSES[int(shown.argmax())]
    # T = 5 flattens visibly: the raw softmax of the same frames is another scale.
    assert np.abs(by_hand(frame_logits, T) - by_hand(frame_logits, 1.0)).max() > 0.3


def test_calibration_changes_no_segment_and_no_label(checkpoint):
    """The same segments (times, labels) with and without the temperature. On this clip, segments cut on the
    calibrated frames would differ: a neutral stretch 0.00-0.70 s would split into neutral and anger."""
    folder, model, _, waveform = checkpoint
    calibrated, raw = load_pipeline(folder)(waveform), load_pipeline(folder, calibrated=False)(waveform)
    assert calibrated["predicted"] == raw["predicted"]
    spans = [[(s["start_s"], s["end_s"], s["predicted"]) for s in r["timeline"]] for r in (calibrated, raw)]
    assert spans[0] == spans[1]
    _, frame_logits = logits_of(model, waveform)
    on_calibrated = smooth_frames(by_hand(frame_logits, T), "median", 11).argmax(-1)
    assert (on_calibrated != smooth_frames(by_hand(frame_logits, 1.0), "median", 11).argmax(-1)).any()


SCALES = [([], T, "(calibrated, temperature 5.00)"), (["--no-calibration"], 1.0, "(uncalibrated)")]


@pytest.mark.parametrize("flags, temperature, note", SCALES)
def test_the_cli_table_header_and_rows_show_one_scale(checkpoint, tmp_path, capsys, flags, temperature, note):
    """docs/inference.md's --join table: the header's utterance probabilities and the rows' segment probabilities
    are on the scale of the temperature the header names (the checkpoint's, or 1 with --no-calibration)."""
    folder, model, clips, waveform = checkpoint
    out = tmp_path / "joined.json"
    argv = [*clips, "--join", "--model", str(folder), "--json", str(out), *flags]
    assert timeline_main(argv) == 0
    printed = capsys.readouterr().out
    (record,) = json.loads(out.read_text())
    assert record["calibration_temperature"] == temperature
    logits, frame_logits = logits_of(model, waveform)
    utterance = dict(zip(CLASSES, by_hand(logits, temperature)))
    header = printed.splitlines()[0]
    assert header.startswith("2 files joined  (") and header.endswith(note)
    shown = dict((name, float(p)) for name, p in re.findall(r"(\w+) (\d\.\d\d)", header.split("[")[1].split("]")[0]))
    assert shown == {name: round(p, 2) for name, p in utterance.items()}
    smoothed = smooth_frames(by_hand(frame_logits, 1.0), "median", 11)
    rows = [line.split() for line in printed.splitlines()[2:] if re.match(r"^ +\d+\.\d\d +\d", line)]
    assert len(rows) == len(record["timeline"]) > 2
    for row, mean in zip(rows, segment_means(record, smoothed)):
        mean = tempered_by_hand(mean / mean.sum(), temperature)
        assert row[2] == CLASSES[int(mean.argmax())] and float(row[3]) == round(float(mean.max()), 2)
