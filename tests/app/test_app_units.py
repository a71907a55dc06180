"""The demo's parts without a server: the upload limits (`read_upload`) against hand-made files, the fold ensemble
against the mean of the folds' probabilities computed by hand, and the measured backend choice (static / dynamic int8
or fp32 ONNX) against labels recomputed here."""

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import POLISH3, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.app.demo import DemoInputError, FoldEnsemble, format_seconds, read_upload, segment_rows
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.pipeline_frame_aligned import FrameAlignedEmotionPipeline
from modeling.prediction_fields import probabilities_of


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "No audio: upload a file"),
        ("zero_bytes", "`clip.wav` is empty (0 bytes)"),
        ("text", "`clip.wav` is not an audio file this demo can decode"),
        ("no_samples", "`clip.wav` is an empty recording (0 samples)"),
        ("silence", "`clip.wav` is silent (peak amplitude 0.0e+00)"),
        ("nan", "`clip.wav` contains non-finite samples"),
    ],
)
def test_bad_uploads_are_refused_with_a_message_naming_the_file(tmp_path, kind, message):
    path = tmp_path / "clip.wav"
    if kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not audio\n" * 50)
    elif kind == "no_samples":
        sf.write(path, np.zeros(0, np.float32), 16000)
    elif kind == "silence":
        sf.write(path, np.zeros(16000, np.float32), 16000)
    elif kind == "nan":
        sf.write(path, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(DemoInputError) as error:
        read_upload(None if kind == "missing" else str(path))
    assert message in str(error.value)
    assert str(tmp_path) not in str(error.value)  # no server path in the page


def test_long_upload_is_cut_to_the_limit_and_stereo_is_averaged(tmp_path):
    rate = 8000
    left = np.sin(np.arange(70 * rate) * 0.01).astype(np.float32) * 0.5
    right = np.full_like(left, 0.25)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="FLOAT")
    waveform, got_rate, note = read_upload(str(path), max_duration_s=60)
    assert got_rate == rate and waveform.shape == (60 * rate,)
    np.testing.assert_allclose(waveform, (left[: 60 * rate] + 0.25) / 2, atol=1e-7)
    assert note == (
        "`long.wav` lasts 1 min 10 s: the demo analyses its first 1 min (the limit of this demo; `predict.py` or "
        "the pipeline take any length)."
    )
    _, _, note = read_upload(str(path), max_duration_s=70)  # exactly the limit: nothing cut, nothing said
    assert note == ""


def test_format_seconds_and_segment_rows():
    assert [format_seconds(s) for s in (0.5, 12.25, 60, 1203.4)] == ["0.5 s", "12.2 s", "1 min", "20 min 3.4 s"]
    result = {
        "timeline": [{"start_s": 0.0, "end_s": 1.23456, "predicted": "fear", "prob_fear": 0.612345, "weight": 1e-05}]
    }
    assert segment_rows(result) == (
        ["start_s", "end_s", "predicted", "prob_fear", "weight"],
        [[0.0, 1.235, "fear", 0.6123, 1e-05]],
    )


def _pipeline(model):
    return FrameAlignedEmotionPipeline(model=model, feature_extractor=make_feature_extractor(), device=-1)


def test_fold_ensemble_is_the_mean_of_the_folds_probabilities():
    """Each fold calibrated with its own temperature (5 and 2): the ensemble averages the folds' calibrated
    utterance and frame probabilities, as score.py's ensemble does."""
    models = []
    for seed, temperature in ((0, 5.0), (1, 2.0)):
        torch.manual_seed(seed)
        models.append(Wav2Vec2ForFrameAlignedClassification(tiny_config(calibration_temperature=temperature)).eval())
    waveform = load_audio(POLISH3 / "audio" / "m1.a_nie_1.flac")
    folds = [_pipeline(model)(waveform, return_frames=True) for model in models]
    ensemble = _pipeline(FoldEnsemble(models))(waveform, return_frames=True)
    by_hand = {
        c: (probabilities_of(folds[0])[c] + probabilities_of(folds[1])[c]) / 2 for c in probabilities_of(folds[0])
    }
    assert probabilities_of(ensemble) == pytest.approx(by_hand, abs=1e-6)
    assert probabilities_of(folds[0]) != pytest.approx(by_hand, abs=1e-3)  # the folds really differ
    frames = (folds[0]["frames"]["probabilities"] + folds[1]["frames"]["probabilities"]) / 2
    np.testing.assert_allclose(ensemble["frames"]["probabilities"], frames, atol=1e-6)
    weights = (folds[0]["frames"]["weights"] + folds[1]["frames"]["weights"]) / 2
    np.testing.assert_allclose(ensemble["frames"]["weights"], weights, atol=1e-7)


def test_fold_ensemble_refuses_folds_with_different_classes():
    torch.manual_seed(0)
    one = Wav2Vec2ForFrameAlignedClassification(tiny_config())
    other = Wav2Vec2ForFrameAlignedClassification(
        tiny_config(id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2})
    )
    with pytest.raises(ValueError, match="the folds' classes differ"):
        FoldEnsemble([one, other])


def test_app_latency_percentiles_and_verdict_from_given_numbers():
    """benchmarks/app_latency.py's timing-free parts: linear-interpolation percentiles and the target verdict."""
    from benchmarks.app_latency import percentile, verdict

    times = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(times, 50) == 3.0 and percentile(times, 95) == pytest.approx(4.0 + 0.8 * 6.0)
    latencies = {
        "torch": {"speedup_p50": 1.0},
        "onnx": {"speedup_p50": 1.3},
        "onnx-int8": {"speedup_p50": 1.9},
        "onnx-int8-static": {"speedup_p50": 2.4},
    }
    agreement = {
        "fold1": {"agreement": {"onnx-int8-static": 0.98, "onnx-int8": 1.0}},
        "fold2": {"agreement": {"onnx-int8-static": 0.965, "onnx-int8": 1.0}},
    }
    target = "(≥ 2× at ≥ 97% label agreement on every demo checkpoint)"
    assert verdict(latencies, agreement) == (
        f"onnx-int8 (onnx-int8-static 2.40× at ≥ 96%, onnx-int8 1.90× at ≥ 100%): target {target} NOT met"
    )  # static int8 is faster but loses labels; dynamic keeps them but is under 2×
    agreement["fold2"]["agreement"]["onnx-int8-static"] = 0.97
    assert verdict(latencies, agreement).startswith("onnx-int8-static (") and verdict(latencies, agreement).endswith(
        f"target {target} met"
    )
    agreement["fold1"]["agreement"]["onnx-int8"] = agreement["fold1"]["agreement"]["onnx-int8-static"] = 0.5
    assert verdict(latencies, agreement).startswith("no int8 model keeps the labels")


def test_demo_page_is_self_contained_and_its_imports_are_in_the_space_requirements():
    """demo.py is uploaded to the Space alone: no relative or `modeling` import, and every package it imports is in
    the Space's requirements.txt (gradio and pandas come with the Hub's gradio)."""
    import ast
    import sys

    from modeling.publishing.space import APP_SOURCE, space_requirements

    tree = ast.parse(APP_SOURCE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"relative import in demo.py line {node.lineno}"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert "modeling" not in third_party
    required = {line.split("=")[0].split(">")[0].split("<")[0] for line in space_requirements().splitlines()}
    pip_names = {"huggingface_hub": "huggingface-hub"}
    assert {pip_names.get(name, name) for name in third_party} - required == {"gradio", "pandas"}
