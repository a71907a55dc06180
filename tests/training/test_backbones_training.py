"""train.py on HuBERT, WavLM and data2vec-audio checkpoints saved with transformers' own classes: the model class
comes from the checkpoint's `model_type`, a checkpoint whose backbone does not load stops the run before training,
and (slow) a 1-fold, 1-epoch run per backbone on real speech whose stage-2 best model loads through remote code."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from backbone_runs import FAST_CONV, per_backbone, write_config
from helpers import PREFIXES, save_plain_backbone
from safetensors.torch import load_file

from modeling import BackboneWeightsError
from modeling.training.checkpoints import ModelSettingsError
from modeling.training.experiment import run_experiment
from modeling.training.run_config import ConfigError, resolve_config


def test_checkpoint_whose_backbone_does_not_load_stops_before_training(tmp_path):
    """data2vec-audio weights under a config.json that says wav2vec2: the positional convolution's tensors are not
    found (transformers would log them and train from random values). (HuBERT weights would load: same names.)"""
    save_plain_backbone("data2vec-audio", tmp_path / "backbone", **FAST_CONV)
    config_file = tmp_path / "backbone" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "model_type": "wav2vec2"}))
    config = resolve_config(write_config(tmp_path / "run.yaml", tmp_path / "backbone"))
    with pytest.raises(
        BackboneWeightsError,
        match=r"3 backbone tensors of Wav2Vec2ForFrameAlignedClassification are "
        r"missing from the checkpoint \(wav2vec2.encoder.pos_conv_embed.conv.bias, wav2vec2.encoder.pos_conv_embed",
    ):
        run_experiment(config, tmp_path / "run", folds="1")
    assert not list((tmp_path / "run").glob("fold1/stage1/checkpoint-*"))  # nothing trained


def test_model_problems_are_listed_together_before_training(tmp_path):
    """A weighted layer sum with the frozen-prefix cache, and a classifier projection, on a WavLM checkpoint."""
    save_plain_backbone("wavlm", tmp_path / "backbone", **FAST_CONV)
    config = resolve_config(
        write_config(
            tmp_path / "run.yaml",
            tmp_path / "backbone",
            model={"config_overrides": {"use_weighted_layer_sum": True}},
            stage2={"cache_frozen_prefix": True},
        )
    )
    with pytest.raises(
        ModelSettingsError,
        match=r"(?s)stage2: WavLMForFrameAlignedClassification: the frozen-prefix "
        r"cache does not support use_weighted_layer_sum",
    ):
        run_experiment(config, tmp_path / "run", folds="1")
    config["model"]["config_overrides"] = {"classifier_proj_size": 64}
    # a field the config class refuses is found by the config checks, before the model is loaded
    with pytest.raises(ConfigError, match=r"(?s)stage1: .*classifier_proj_size=64.*stage2: .*classifier_proj"):
        run_experiment(config, tmp_path / "run2", folds="1")
    assert not list(tmp_path.glob("run*/fold1/stage1/checkpoint-*"))


def test_random_init_takes_a_model_type(tmp_path):
    from accelerate import PartialState

    from modeling.auto_frame_aligned import frame_aligned_class_of as model_class_of
    from modeling.rundir.layout import RunDir
    from modeling.training.checkpoints import initial_checkpoint

    config = {
        "seed": 0,
        "model": {
            "name_or_path": None,
            "random_init": {
                "model_type": "data2vec-audio",
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "conv_dim": [16, 16, 16],
                "num_conv_pos_embeddings": 2,
                **FAST_CONV,
            },
        },
    }
    path = initial_checkpoint(config, RunDir(tmp_path), ["a", "b"], PartialState())
    assert json.loads((Path(path) / "config.json").read_text())["model_type"] == "data2vec-audio-frame-aligned"
    assert model_class_of(path).__name__ == "Data2VecAudioForFrameAlignedClassification"


@pytest.mark.slow
@pytest.mark.parametrize(
    "model_type",
    [
        # heavy: Whisper's fresh process and model card (~8 CPU-s over its shared run); make test keeps its remote
        # code in a fresh process (test_loader.py, the matrix's Hub download) and the card of the other backbones
        pytest.param(*p.values, marks=[*p.marks, pytest.mark.heavy]) if p.values[0] == "whisper" else p
        for p in per_backbone(["hubert", "wavlm", "data2vec-audio", "whisper"])
    ],
)  # HuBERT: prefix cache; WavLM: SUPERB; Whisper: its encoder (its own remote-code file)
def test_train_py_from_a_plain_backbone_checkpoint_on_real_speech(model_type, backbone_run, tmp_path):
    run = backbone_run(model_type)  # train.py --folds 1 from a plain checkpoint (backbone_runs.py), shared
    run_dir = run.path
    results = json.loads((run_dir / "results.json").read_text())
    fold = results["folds"]["1"]
    assert 0.0 <= fold["test"]["ua"] <= 1.0 and fold["num_examples"]["test"] == 4
    best = run.best
    assert json.loads((best / "config.json").read_text())["model_type"] == f"{model_type}-frame-aligned"

    # The CNN (Whisper: the conv stem) is frozen in both stages: bit-identical to the source checkpoint's.
    prefix = PREFIXES[model_type]
    source = load_file(run.backbone / "model.safetensors")
    trained = load_file(best / "model.safetensors")
    stem = ("encoder.conv1.", "encoder.conv2.") if model_type == "whisper" else ("feature_extractor.",)
    cnn = [key for key in source if key.startswith(stem)]
    assert cnn and all(torch.equal(trained[f"{prefix}.{key}"], source[key]) for key in cnn)
    assert not all(torch.equal(trained[f"{prefix}.{key}"], source[key]) for key in source if ".layers.1." in key)

    # The model card names the backbone (and tags it).
    from modeling.publishing.model_card import render_fold_card, render_overview_card
    from modeling.publishing.run import load_run

    run = load_run(run_dir)
    card = render_fold_card(run, run.folds["1"], "user/ser")
    name, tag = {
        "hubert": ("HuBERT", "hubert"),
        "wavlm": ("WavLM", "wavlm"),
        "data2vec-audio": ("data2vec-audio", "data2vec-audio"),
        "whisper": ("Whisper (encoder)", "whisper"),
    }[model_type]
    assert f"a {name} backbone fine-tuned from a local checkpoint (`backbone`)" in card and f"- {tag}\n" in card
    assert "wav2vec" not in card.split("## Limitations")[0].replace("Wav2Vec2FeatureExtractor", "")
    assert f"Speech emotion classifiers ({name} + CLS" in render_overview_card(run, "user/ser")

    # The stage-2 best model loads in a fresh process through its remote code (no `modeling` package).
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.modules["modeling"] = None
        from transformers import AutoModelForAudioClassification
        model = AutoModelForAudioClassification.from_pretrained({str(best)!r}, trust_remote_code=True)
        logits = model.eval()(torch.zeros(1, 16000)).logits
        print(type(model).__module__, type(model).__name__, tuple(logits.shape))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    module, name, shape = loaded.stdout.split()[-4], loaded.stdout.split()[-3], loaded.stdout.strip().split(" ", 2)[2]
    assert module.startswith("transformers_modules.") and name == type_name(model_type) and shape == "(1, 3)"


def type_name(model_type: str) -> str:
    return {
        "hubert": "HubertForFrameAlignedClassification",
        "wavlm": "WavLMForFrameAlignedClassification",
        "data2vec-audio": "Data2VecAudioForFrameAlignedClassification",
        "whisper": "WhisperForFrameAlignedClassification",
    }[model_type]
