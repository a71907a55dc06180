"""examples/finetune_audio_dataset.py end to end, offline, on every backbone: a local audiofolder with split folders
and a local plain backbone folder (tiny, saved with transformers' own class)."""

import json
import subprocess
import sys

import pytest
import torch
from backbone_runs import FAST_CONV
from fake_corpora import make_split_folders
from helpers import BACKBONES, REPO, save_plain_backbone

from modeling import AutoModelForFrameAlignedClassification


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_type",
    [
        # heavy: a fifth fine-tuning subprocess (~30 s) for Whisper; make test keeps the four others here and
        # Whisper's train.py run (test_backbone_matrix.py)
        pytest.param(model_type, marks=pytest.mark.heavy) if model_type == "whisper" else model_type
        for model_type in BACKBONES
    ],
)
def test_finetuning_example_runs_offline_and_loads_every_backbone_tensor(model_type, tmp_path):
    """On a plain checkpoint of each backbone (issue 19: the example opened every backbone as wav2vec 2.0)."""
    counts = make_split_folders(tmp_path / "corpus")
    backbone = tmp_path / "backbone"
    source = save_plain_backbone(model_type, backbone, **FAST_CONV).state_dict()
    if model_type == "whisper":  # the encoder of an encoder-decoder: the decoder is not loaded
        source = {name: tensor for name, tensor in source.items() if not name.startswith("decoder.")}
    command = [
        sys.executable,
        "examples/finetune_audio_dataset.py",
        "--data",
        str(tmp_path / "corpus"),
        "--backbone",
        str(backbone),
        "--output-dir",
        str(tmp_path / "out"),
        "--stage1-epochs",
        "1",
        "--stage2-epochs",
        "1",
        "--batch-size",
        "4",
        "--max-length-seconds",
        "1.0",
        "--num-trainable-layers",
        "1",
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "HF_HUB_OFFLINE": "1",
            "PATH": "/usr/bin:/bin",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),  # this checkout (the venv may hold another editable one)
            "HF_HOME": str(tmp_path / "hf"),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "test_metrics.json").read_text())
    assert summary["num_test"] == counts["test"] and 0 <= summary["test_ua"] <= 1 and 0 <= summary["test_wa"] <= 1
    assert "test UA" in result.stdout
    model = AutoModelForFrameAlignedClassification.from_pretrained(tmp_path / "out" / "final")
    assert model.config.model_type == f"{model_type}-frame-aligned"
    assert model.config.pooling == "cls_attention" and model.config.num_trainable_layers == 1
    # Every backbone tensor came from the checkpoint (the loader refuses less); the CNN (Whisper: the conv stem),
    # frozen in both stages, is still bit-identical to it.
    trained = model.base_model.state_dict()
    assert set(trained) == set(source)
    stem = ("encoder.conv1.", "encoder.conv2.") if model_type == "whisper" else ("feature_extractor.",)
    cnn = [name for name in source if name.startswith(stem)]
    assert cnn and all(torch.equal(trained[name], source[name]) for name in cnn)
    assert list(model.config.id2label.values()) == summary["labels"] == ["anger", "fear", "neutral"]
    assert (tmp_path / "out" / "final" / "preprocessor_config.json").is_file()
