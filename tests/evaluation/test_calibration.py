"""Calibration (modeling/evaluation/calibration.py, the temperature in the core): a known temperature recovered, ECE
and Brier by hand, and the checkpoint's temperature applied identically by the pipeline, the ONNX backend and
predict.py (logits unchanged), its --timeline segments too."""

import csv
import json

import numpy as np
import pytest
import torch
from helpers import polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.evaluation.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    store_temperature,
)
from modeling.prediction_fields import calibration_temperature, probabilities_of, softmax
from modeling.rundir.integrity import checkpoint_problems, write_manifest


def test_fit_recovers_a_known_temperature_and_lowers_ece():
    """Labels drawn from softmax(z); the model reports 2.5·z (overconfident): T = 2.5 undoes it exactly."""
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(4000, 4))
    p = softmax(true_logits)
    labels = (rng.random((4000, 1)) > np.cumsum(p, axis=1)).sum(axis=1)
    for true_t in (2.5, 0.5):
        logits = true_logits * true_t
        fitted = fit_temperature(logits, labels)
        assert fitted == pytest.approx(true_t, rel=0.05), true_t
        before, after = softmax(logits), softmax(logits, fitted)
        assert expected_calibration_error(after, labels) < 0.5 * expected_calibration_error(before, labels)
        assert negative_log_likelihood(logits, labels, fitted) < negative_log_likelihood(logits, labels)
        assert (after.argmax(1) == before.argmax(1)).all()  # the predicted class never changes
    with pytest.raises(ValueError, match="3 logits rows for 2 labels"):
        fit_temperature(np.zeros((3, 2)), [0, 1])


def test_ece_brier_and_bins_by_hand():
    # Top probabilities 0.9 (right), 0.9 (wrong), 0.6 (right), 0.3 → 0.4 is the top class of row 4 (wrong).
    probabilities = np.array([[0.9, 0.1, 0.0], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]])
    labels = np.array([0, 1, 0, 2])
    # 15 bins of width 1/15: 0.9 → bin 13 ((13/15, 14/15]), 0.6 → bin 8 ((8/15, 9/15]), 0.4 → bin 5.
    # ECE = 2/4·|1/2 − 0.9| + 1/4·|1 − 0.6| + 1/4·|0 − 0.4| = 0.2 + 0.1 + 0.1 = 0.4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.4)
    assert [(b["n"], b["accuracy"]) for b in reliability_bins(probabilities, labels)] == [(1, 0.0), (1, 1.0), (2, 0.5)]
    # Brier: (0.01+0.01) + (0.81+0.9025+0.0025) + (0.16+0.09+0.01) + (0.09+0.16+0.49) = 2.735 → /4
    assert brier_score(probabilities, labels) == pytest.approx(2.735 / 4)
    # A confidence of exactly 8/15 belongs to bin 7 ((7/15, 8/15]): right edges are inclusive.
    edge = np.array([[8 / 15, 7 / 15], [0.55, 0.45]])
    assert [b["low"] for b in reliability_bins(edge, [0, 1])] == pytest.approx([7 / 15, 8 / 15])
    assert expected_calibration_error(edge, [0, 1]) == pytest.approx(0.5 * (1 - 8 / 15) + 0.5 * 0.55)


def test_temperature_in_softmax_and_config():
    logits = np.array([[2.0, 0.0, -1.0]])
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    assert softmax(logits, 2.0) == pytest.approx(expected)
    assert softmax(logits, None) == pytest.approx(softmax(logits, 1.0))
    for bad in (0, -1.0, float("nan"), "warm"):
        with pytest.raises(ValueError, match="positive finite number"):
            softmax(logits, bad)
    config = tiny_config(calibration_temperature=1.7)
    assert calibration_temperature(config) == 1.7 and calibration_temperature(config, calibrated=False) == 1.0
    assert calibration_temperature(tiny_config()) == 1.0
    with pytest.raises(ValueError, match="calibration_temperature` must be a positive number"):
        tiny_config(calibration_temperature=-2.0)


T = 0.2  # sharpens the near-uniform outputs of a random tiny model, so calibrated ≠ raw by far more than tolerances


@pytest.fixture(scope="module")
def calibrated_checkpoint(tmp_path_factory):
    """A tiny checkpoint whose temperature was stored the way train.py stores it (store_temperature)."""
    folder = tmp_path_factory.mktemp("calibrated")
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config()).eval()
    model.save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    write_manifest(folder)
    store_temperature(folder, T)
    assert json.loads((folder / "config.json").read_text())["calibration_temperature"] == T
    assert checkpoint_problems(folder) == []  # checksums.json rewritten with the new config.json
    clip = polish3_clips(1)[0][0]
    waveform = make_feature_extractor()(load_audio(clip), sampling_rate=16000, return_tensors="pt").input_values
    with torch.no_grad():
        logits = model(input_values=waveform).logits[0].double()
    return folder, clip, logits


def test_pipeline_onnx_and_predict_py_give_the_same_calibrated_probabilities(calibrated_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from modeling.cli.predict import main as predict_main
    from modeling.inference import load_pipeline

    folder, clip, logits = calibrated_checkpoint
    classes = ["anger", "fear", "neutral"]
    calibrated = dict(zip(classes, torch.softmax(logits / T, dim=-1).tolist()))  # torch's softmax, not ours
    raw = dict(zip(classes, torch.softmax(logits, dim=-1).tolist()))
    assert max(abs(calibrated[c] - raw[c]) for c in classes) > 0.01
    torch_result = load_pipeline(folder, backend="torch")(clip)
    onnx_result = load_pipeline(folder, backend="onnx")(clip)
    assert probabilities_of(torch_result) == pytest.approx(calibrated, abs=1e-6)
    assert probabilities_of(onnx_result) == pytest.approx(calibrated, abs=1e-5)
    assert probabilities_of(load_pipeline(folder, calibrated=False)(clip)) == pytest.approx(raw, abs=1e-6)
    # --timeline's segments on the scale of the CSV's utterance probabilities: the pipeline's, calibrated or not.
    segments = {flag: load_pipeline(folder, calibrated=flag)(clip)["timeline"] for flag in (True, False)}
    assert [s["predicted"] for s in segments[True]] == [s["predicted"] for s in segments[False]]
    assert probabilities_of(segments[True][0]) != pytest.approx(probabilities_of(segments[False][0]), abs=0.01)
    for flags, expected, timeline in (([], calibrated, segments[True]), (["--no-calibration"], raw, segments[False])):
        out, jsonl = tmp_path / f"predictions{len(flags)}.csv", tmp_path / f"timeline{len(flags)}.jsonl"
        argv = [clip, "--model", str(folder), "--output", str(out), "--timeline", str(jsonl), "--no-progress"]
        assert predict_main([*argv, *flags]) == 0
        with open(out, newline="") as f:
            (row,) = list(csv.DictReader(f))
        assert probabilities_of(row) == pytest.approx(expected, abs=2e-6)
        (line,) = [json.loads(text) for text in jsonl.read_text().splitlines()]
        assert len(line["timeline"]) == len(timeline)
        for written, segment in zip(line["timeline"], timeline):
            assert probabilities_of(written) == pytest.approx(probabilities_of(segment), abs=2e-6)


def test_ensemble_temperature_is_fitted_on_the_calibrated_members_mean():
    """Two members that report 3·z (z: the true logits of the held-out labels). With member temperatures 3 the mean
    is already calibrated (T_ensemble ≈ 1); with temperatures 1 it is three times too sharp (T_ensemble ≈ 3)."""
    from modeling.evaluation.cross_corpus import ENSEMBLE, ensemble_temperature
    from modeling.metrics.predictions import Predictions

    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, size=(3000, 3))
    labels = (rng.random((3000, 1)) > np.cumsum(softmax(z), axis=1)).sum(axis=1)
    logits = {"fold1": 3 * z, "fold2": 3 * z}
    for member_t, expected in ((3.0, 1.0), (1.0, 3.0)):
        temperatures = {"fold1": member_t, "fold2": member_t}
        mean = softmax(3 * z, member_t)
        common = dict(files=["f"] * 3000, speakers=["s"] * 3000, labels=labels, classes=["a", "b", "c"])
        members = {ENSEMBLE: Predictions(probabilities=mean, **common)}
        calibration = {ENSEMBLE: {}}
        ensemble_temperature(members, calibration, softmax(3 * z), logits, temperatures, {"label": labels})
        assert calibration[ENSEMBLE]["temperature"] == pytest.approx(expected, rel=0.05), member_t
        assert np.allclose(
            members[ENSEMBLE].probabilities, softmax(np.log(mean), calibration[ENSEMBLE]["temperature"])
        )


@pytest.mark.parametrize("count", [6, 29, 30, 200])
def test_train_py_fits_a_temperature_only_on_a_validation_split_of_30_utterances_or_more(count, tmp_path):
    """The demo's 6-clip validation splits put the fitted T at 0.13 (test ECE worse): below 30 utterances T = 1."""
    from modeling.training.scoring import SplitOutputs, calibrate

    rng = np.random.default_rng(count)
    z = rng.normal(size=(count, 3)) * 2
    labels = np.array([rng.choice(3, p=p) for p in softmax(z)])
    outputs = {
        split: SplitOutputs(logits=2.5 * z, labels=labels, embeddings=np.zeros((count, 4)))
        for split in ("validation", "test")
    }
    (tmp_path / "config.json").write_text("{}")
    calibration = calibrate(outputs, tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())["calibration_temperature"]
    assert stored == calibration["temperature"]
    if count < 30:
        assert stored == 1.0 and calibration["fitted_on"] is None
        assert calibration["not_fitted"] == f"validation split of {count} utterances (< 30)"
    else:
        assert stored == fit_temperature(2.5 * z, labels) != 1.0 and calibration["fitted_on"] == "validation"


def test_a_temperature_at_a_bound_is_recorded_and_warned(tmp_path, caplog):
    """A model at chance on its validation split: near-uniform probabilities fit best, T runs to the upper bound 20
    (the demo's fold 2): metrics.json says so instead of storing a silent 20."""
    from modeling.training.scoring import SplitOutputs, calibrate

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 3)) * 3
    labels = rng.integers(0, 3, size=60)  # independent of the logits
    outputs = {"validation": SplitOutputs(logits=logits, labels=labels, embeddings=np.zeros((60, 4)))}
    (tmp_path / "config.json").write_text("{}")
    with caplog.at_level("WARNING"):
        calibration = calibrate(outputs, tmp_path)
    assert calibration["temperature"] == pytest.approx(20.0, rel=1e-3)
    assert calibration["at_bound"] == "T = 20, a bound of [0.05, 20.0]"
    assert "calibration temperature T = 20" in caplog.text
