"""examples/finetune_audio_dataset.py end to end, offline: a local audiofolder with split folders and a local
backbone folder (a tiny randomly initialised wav2vec2 saved with save_pretrained)."""

import json
import subprocess
import sys

import pytest
from fake_corpora import make_split_folders
from helpers import REPO
from transformers import Wav2Vec2Config, Wav2Vec2Model

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor


def tiny_backbone(folder, num_hidden_layers: int = 2):
    """A plain wav2vec2 checkpoint folder, like facebook/wav2vec2-base but tiny."""
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_kernel=(10, 8, 8),
        conv_stride=(5, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        mask_time_prob=0.0,
        layerdrop=0.0,
    )
    Wav2Vec2Model(config).save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_finetuning_example_runs_offline(tmp_path):
    counts = make_split_folders(tmp_path / "corpus")
    backbone = tiny_backbone(tmp_path / "backbone")
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
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(tmp_path / "out" / "final")
    assert model.config.pooling == "cls_attention" and model.config.num_trainable_layers == 1
    assert list(model.config.id2label.values()) == summary["labels"] == ["anger", "fear", "neutral"]
    assert (tmp_path / "out" / "final" / "preprocessor_config.json").is_file()
