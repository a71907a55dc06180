"""The backbone × entry-point matrix (issue 19): on a finished tiny train.py run of each backbone (wav2vec 2.0,
HuBERT, WavLM, data2vec-audio, Whisper's encoder; `backbone_runs.py`, trained once per session), every entry point
gives the run's own numbers:

- score.py on the run's own test speakers reproduces the run's `predictions_test.csv` (same classes, probabilities
  within 1e-4): the checkpoint opens as its own class, not as wav2vec 2.0's;
- predict.py with the torch and the ONNX backend equals the pipeline;
- the fold pushed to the loopback Hub, downloaded in a fresh process without this package, gives the local model's
  probabilities.

The Trainer paths per backbone are in `trainer/test_trainer_paths.py`, the example per backbone in
`test_examples.py`."""

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from backbone_runs import per_backbone
from helpers import BACKBONES, POLISH3
from hub_server import client_env

from modeling.cli.predict import main as predict_main
from modeling.cli.score import main as score_main
from modeling.inference import load_pipeline
from modeling.metrics.predictions import read_predictions
from modeling.prediction_fields import probabilities_of


pytestmark = pytest.mark.slow
MODEL_TYPES = list(BACKBONES)


def fold_test_clips(run) -> list[str]:
    return [str(POLISH3 / file) for file in read_predictions(run.path / "fold1" / "predictions_test.csv").files]


@pytest.mark.parametrize("model_type", per_backbone(MODEL_TYPES))
def test_score_py_reproduces_the_runs_own_test_predictions(model_type, backbone_run, tmp_path):
    run = backbone_run(model_type)
    split = json.loads((run.path / "fold1" / "split.json").read_text())
    data = {**run.config["data"], "speakers": split["test"]["speakers"]}  # the fold's test speakers only
    config = tmp_path / "test_speakers.yaml"
    config.write_text(yaml.safe_dump({"data": data}))
    out = tmp_path / "scored"
    args = ["--run-dir", str(run.path), "--config", str(config), "--output-dir", str(out), "--batch-size", "4"]
    assert score_main(args) == 0

    expected = read_predictions(run.path / "fold1" / "predictions_test.csv")
    scored = read_predictions(out / "predictions.csv")
    fold1 = [i for i, name in enumerate(scored.extra["model"]) if name == "fold1"]
    assert scored.classes == expected.classes
    rows = {scored.files[i]: i for i in fold1}
    assert sorted(rows) == sorted(expected.files) and len(expected.files) == 4
    order = [rows[file] for file in expected.files]
    assert scored.labels[order].tolist() == expected.labels.tolist()
    assert scored.predicted[order].tolist() == expected.predicted.tolist()
    np.testing.assert_allclose(scored.probabilities[order], expected.probabilities, atol=1e-4)
    assert np.isfinite(scored.probabilities).all()


@pytest.mark.parametrize("model_type", per_backbone(MODEL_TYPES))
def test_predict_py_torch_and_onnx_equal_the_pipeline(model_type, backbone_run, tmp_path):
    run = backbone_run(model_type)
    clips = fold_test_clips(run)
    pipe = load_pipeline(run.best)
    expected = {clip: pipe(clip) for clip in clips}
    for backend, tolerance in (("torch", 1e-6), ("onnx", 1e-4)):
        output = tmp_path / f"{backend}.csv"
        args = [*clips, "--model", str(run.best), "--output", str(output), "--backend", backend, "--no-progress"]
        assert predict_main(args) == 0
        with open(output, newline="") as f:
            rows = {row["file"]: row for row in csv.DictReader(f)}
        assert sorted(rows) == sorted(clips)
        for clip, result in expected.items():
            assert rows[clip]["predicted"] == result["predicted"], (backend, clip)
            got = {name[5:]: float(value) for name, value in rows[clip].items() if name.startswith("prob_")}
            assert got == pytest.approx(probabilities_of(result), abs=tolerance), (backend, clip)


# HuBERT, WavLM and data2vec-audio share wav2vec 2.0's remote-code file: their fresh-process downloads (~30 s each)
# run in make test-all; make test keeps wav2vec 2.0 and Whisper (its own file)
@pytest.mark.parametrize(
    "model_type",
    [
        p if p.values[0] in ("wav2vec2", "whisper") else pytest.param(*p.values, marks=[*p.marks, pytest.mark.heavy])
        for p in per_backbone(MODEL_TYPES)
    ],
)
def test_a_pushed_fold_downloaded_in_a_fresh_process_equals_the_local_model(
    model_type, backbone_run, hub, api, tmp_path
):
    from modeling.publishing.hub import push_run

    run = backbone_run(model_type)
    clip = fold_test_clips(run)[0]
    repo = f"org/matrix-{model_type}"
    push_run(run.path, repo, api=api)
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling"] = None  # a Hub user's machine: remote code only
        from transformers import pipeline
        timeline = pipeline("frame-aligned-emotion", model={repo + "-fold1"!r}, trust_remote_code=True, device="cpu")
        result = timeline({clip!r})
        print(json.dumps({{k: v for k, v in result.items() if k == "predicted" or k.startswith("prob_")}}))
        """
    )
    (tmp_path / "hf").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=client_env(hub, tmp_path / "hf"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    downloaded = json.loads(done.stdout.strip().splitlines()[-1])
    local = load_pipeline(run.best)(clip)
    assert downloaded["predicted"] == local["predicted"]
    assert probabilities_of(downloaded) == pytest.approx(probabilities_of(local), abs=1e-5)
