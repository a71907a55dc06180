"""Hub-style loading: Auto classes, remote code in a fresh process, and the audio-classification pipeline."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import POLISH3_LABELS, polish3_clips, tiny_config
from transformers import AutoConfig, AutoModelForAudioClassification, pipeline

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny stage-2 model saved like a training run saves it: weights, config, code, feature extractor."""
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(pooling="cls_attention")).eval()
    model.save_pretrained(directory)
    make_feature_extractor().save_pretrained(directory)
    return directory, model


@pytest.fixture(scope="module")
def waveform():
    return load_audio(polish3_clips(1)[0][0])


def reference_scores(model, waveform):
    inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).logits.softmax(-1)[0]


def test_saved_directory_is_self_contained_remote_code(saved_model):
    directory, _ = saved_model
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "wav2vec2-frame-aligned"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_frame_aligned.Wav2Vec2FrameAlignedConfig",
        "AutoModel": "modeling_frame_aligned.Wav2Vec2ForFrameAlignedClassification",  # complete on every save
        "AutoModelForAudioClassification": "modeling_frame_aligned.Wav2Vec2ForFrameAlignedClassification",
    }
    for name in ("configuration_frame_aligned.py", "modeling_frame_aligned.py", "preprocessor_config.json"):
        assert (directory / name).exists()
    # relative imports only: the two files work outside this repository
    for name in ("configuration_frame_aligned.py", "modeling_frame_aligned.py"):
        source = (directory / name).read_text()
        assert "from modeling" not in source and "import modeling" not in source


def test_auto_classes_resolve_to_the_registered_model(saved_model, waveform):
    directory, model = saved_model
    assert type(AutoConfig.from_pretrained(directory)).__name__ == "Wav2Vec2FrameAlignedConfig"
    loaded = AutoModelForAudioClassification.from_pretrained(directory).eval()
    assert isinstance(loaded, Wav2Vec2ForFrameAlignedClassification)
    torch.testing.assert_close(reference_scores(loaded, waveform), reference_scores(model, waveform))


def test_pipeline_returns_label_names_with_the_models_scores(saved_model, waveform):
    directory, model = saved_model
    classifier = pipeline("audio-classification", model=str(directory), device="cpu")
    result = classifier({"raw": waveform, "sampling_rate": 16000}, top_k=None)
    expected = reference_scores(model, waveform)
    assert sorted(r["label"] for r in result) == sorted(POLISH3_LABELS)
    for entry in result:
        assert entry["score"] == pytest.approx(expected[POLISH3_LABELS.index(entry["label"])].item(), abs=1e-5)


def test_fresh_process_loads_with_trust_remote_code_without_the_package(saved_model, waveform, tmp_path):
    """A Hub user has only the checkpoint folder: no `modeling` package on the path."""
    directory, model = saved_model
    np.save(tmp_path / "waveform.npy", waveform)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from transformers import AutoModelForAudioClassification, pipeline
        sys.modules["modeling"] = None  # the package is installed editable here: make any import of it fail
        model = AutoModelForAudioClassification.from_pretrained({str(directory)!r}, trust_remote_code=True)
        classifier = pipeline("audio-classification", model={str(directory)!r}, trust_remote_code=True, device="cpu")
        waveform = np.load({str(tmp_path / "waveform.npy")!r})
        result = classifier({{"raw": waveform, "sampling_rate": 16000}}, top_k=None)
        print(json.dumps({{"class": type(model).__module__ + "." + type(model).__name__, "result": result}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    # run from an empty folder so the repository's `modeling` package cannot be imported
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["class"].startswith("transformers_modules.") and output["class"].endswith(
        "Wav2Vec2ForFrameAlignedClassification"
    )
    expected = reference_scores(model, waveform)
    for entry in output["result"]:
        assert entry["score"] == pytest.approx(expected[POLISH3_LABELS.index(entry["label"])].item(), abs=1e-5)
