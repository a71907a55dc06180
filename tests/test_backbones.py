"""One frame-aligned head on five backbones (wav2vec 2.0, HuBERT, WavLM, data2vec-audio, Whisper's encoder): plain
checkpoints load, the weighted layer sum, fields the head refuses, the model class a checkpoint picks, remote code,
the frozen-prefix cache's refusals (the cache on every backbone: prefix_cache/test_frozen_prefix.py)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers import (
    BACKBONES,
    PREFIXES,
    REPO,
    polish3_clips,
    save_plain_backbone,
    tiny_backbone_settings,
)

import modeling
from modeling import (
    Data2VecAudioForFrameAlignedClassification,
    Data2VecAudioFrameAlignedConfig,
    HubertForFrameAlignedClassification,
    HubertFrameAlignedConfig,
    Wav2Vec2ForFrameAlignedClassification,
    WavLMForFrameAlignedClassification,
    WavLMFrameAlignedConfig,
    WhisperForFrameAlignedClassification,
)
from modeling.audio import load_audio
from modeling.auto_frame_aligned import frame_aligned_class_of as model_class_of
from modeling.collator import make_feature_extractor
from modeling.frames import frame_geometry


CLASSES = {
    "wav2vec2": Wav2Vec2ForFrameAlignedClassification,
    "hubert": HubertForFrameAlignedClassification,
    "wavlm": WavLMForFrameAlignedClassification,
    "data2vec-audio": Data2VecAudioForFrameAlignedClassification,
    "whisper": WhisperForFrameAlignedClassification,
}


def tiny_model(model_type: str, seed: int = 0, **head) -> torch.nn.Module:
    model_class = CLASSES[model_type]
    settings = {"pooling": "cls_attention", "num_labels": 3, **tiny_backbone_settings(model_type), **head}
    torch.manual_seed(seed)
    return model_class(model_class.config_class(**settings)).eval()


@pytest.fixture(scope="module")
def batch():
    """Two real clips (different lengths), zero-padded, with their mask."""
    waveforms = [load_audio(path)[:8000] for path, _ in polish3_clips(2)]
    return make_feature_extractor()(
        waveforms, sampling_rate=16000, padding=True, return_tensors="pt", return_attention_mask=True
    )


@pytest.mark.parametrize("model_type", list(BACKBONES))
def test_plain_backbone_checkpoint_loads_every_backbone_tensor(model_type, tmp_path):
    plain = save_plain_backbone(model_type, tmp_path)
    model_class = CLASSES[model_type]
    assert model_class_of(tmp_path) is model_class
    model, info = model_class.from_pretrained(tmp_path, pooling="attentive", num_labels=3, output_loading_info=True)
    assert not info["unexpected_keys"]
    assert model.base_model_prefix == PREFIXES[model_type]
    model.save_pretrained(tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "config.json").read_text())["model_type"] == f"{model_type}-frame-aligned"
    loaded = model.base_model.state_dict()
    source = plain.state_dict()
    if model_type == "whisper":  # the encoder of an encoder-decoder: the decoder is not loaded
        assert any(name.startswith("decoder.") for name in source)
        source = {name: tensor for name, tensor in source.items() if not name.startswith("decoder.")}
    assert set(loaded) == set(source)
    for name, tensor in source.items():
        assert torch.equal(loaded[name], tensor), name
    # The head is new (missing), nothing else is.
    assert {key.split(".")[0] for key in info["missing_keys"]} == {"pooler", "classifier"}
    assert model.config.pooling == "attentive" and model.classifier.out_features == 3


def test_weighted_layer_sum_matches_a_hand_computation(batch):
    """softmax(w)·(hidden states), then mean pooling over valid frames and the classifier, computed by hand."""
    model = tiny_model("hubert", pooling="mean", use_weighted_layer_sum=True, final_dropout=0.0)
    with torch.no_grad():
        model.layer_weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
        output = model(**batch, output_hidden_states=True)
        plain = model(**batch)
    hidden = output.hidden_states
    assert len(hidden) == model.config.num_hidden_layers + 1 and plain.hidden_states is None
    e = [np.exp(w) for w in (0.3, -1.0, 2.0)]
    weights = [x / sum(e) for x in e]
    summed = sum(w * h for w, h in zip(weights, hidden))
    hop, receptive_field = frame_geometry(model.config)
    lengths = batch["attention_mask"].sum(-1)
    frames = (lengths - receptive_field) // hop + 1
    for row in range(2):
        utterance = summed[row, : frames[row]].mean(0)
        logits = utterance @ model.classifier.weight.T + model.classifier.bias
        torch.testing.assert_close(output.logits[row], logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(output.utterance_embedding[row], utterance, atol=1e-5, rtol=1e-5)


def test_weighted_layer_sum_with_a_frozen_backbone_trains_only_weights_and_head(batch):
    """The SUPERB setting: num_trainable_layers=0; gradients reach the layer weights, pooling and classifier only."""
    model = tiny_model("wavlm", use_weighted_layer_sum=True, num_trainable_layers=0)
    model.freeze_for_training()
    model.train()
    model(**batch, labels=torch.tensor([0, 2])).loss.backward()
    with_grad = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"layer_weights", "pooler", "classifier"}
    assert model.layer_weights.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "config_class, settings, message",
    [
        (HubertFrameAlignedConfig, {"classifier_proj_size": 128}, "classifier_proj_size=128"),
        (WavLMFrameAlignedConfig, {"add_adapter": True}, "adapters"),
        (Data2VecAudioFrameAlignedConfig, {"feat_extract_norm": "group"}, "feat_extract_norm"),
        (Data2VecAudioFrameAlignedConfig, {"do_stable_layer_norm": True}, "do_stable_layer_norm"),
        (HubertFrameAlignedConfig, {"pooling": "max"}, "pooling"),
    ],
)
def test_fields_the_head_cannot_honour_are_refused(config_class, settings, message):
    with pytest.raises(ValueError, match=message):
        config_class(**settings)


def test_default_classifier_proj_size_of_pretrained_configs_is_accepted():
    assert HubertFrameAlignedConfig(classifier_proj_size=256).classifier_proj_size == 256


def test_model_class_of_unsupported_checkpoint_names_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"model_type 'bert'.*data2vec-audio.*hubert.*wav2vec2.*wavlm"):
        model_class_of(tmp_path)


def test_backbone_mask_follows_the_norm_type():
    assert not HubertFrameAlignedConfig().use_backbone_attention_mask  # hubert-base: group norm, no mask
    assert HubertFrameAlignedConfig(feat_extract_norm="layer").use_backbone_attention_mask
    assert Data2VecAudioFrameAlignedConfig().use_backbone_attention_mask  # always layer-normalised convolutions
    assert "feat_extract_norm" not in Data2VecAudioFrameAlignedConfig().to_dict()


# The cache on every backbone (reproduced or refused by name): prefix_cache/test_frozen_prefix.py.
@pytest.mark.parametrize(
    "model_type, head, message",
    [("wavlm", {}, "relative position bias"), ("hubert", {"use_weighted_layer_sum": True}, "use_weighted_layer_sum")],
)
def test_frozen_prefix_cache_refuses_what_it_cannot_reproduce(model_type, head, message):
    from modeling.prefix_cache.model import FrozenPrefixModel

    with pytest.raises(ValueError, match=message):
        FrozenPrefixModel(tiny_model(model_type, num_trainable_layers=1, **head))


def test_fresh_process_loads_each_backbone_through_remote_code(batch, tmp_path):
    """One process (it costs ~10 s to start) loads HuBERT, WavLM (with the weighted sum) and data2vec-audio models
    from their folders with `trust_remote_code=True` and no `modeling` package; same logits as here."""
    expected = {}
    for model_type in ("hubert", "wavlm", "data2vec-audio"):
        model = tiny_model(model_type, use_weighted_layer_sum=model_type == "wavlm")
        model.save_pretrained(tmp_path / model_type)
        assert {"pooling_frame_aligned.py", "frames.py"} <= set(os.listdir(tmp_path / model_type))
        with torch.no_grad():
            expected[model_type] = (type(model).__name__, model(**batch).logits)
    torch.save(dict(batch), tmp_path / "batch.pt")
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        sys.modules["modeling"] = None  # the package must not be needed
        from transformers import AutoModelForAudioClassification
        batch, result = torch.load({str(tmp_path / "batch.pt")!r}), {{}}
        for name in {list(expected)!r}:
            model = AutoModelForAudioClassification.from_pretrained({str(tmp_path)!r} + "/" + name,
            trust_remote_code=True)
            with torch.no_grad():
                logits = model.eval()(**batch).logits
            result[name] = [type(model).__module__ + "." + type(model).__name__, logits.tolist()]
        print(json.dumps(result))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    completed = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    for model_type, (class_name, logits) in expected.items():
        loaded_class, loaded_logits = output[model_type]
        assert loaded_class.startswith("transformers_modules.") and loaded_class.endswith(class_name)
        torch.testing.assert_close(torch.tensor(loaded_logits), logits, atol=1e-5, rtol=1e-5)


def test_registered_with_the_auto_classes():
    from transformers import AutoConfig, AutoModelForAudioClassification

    for model_type, model_class in CLASSES.items():
        config = AutoConfig.for_model(
            f"{model_type}-frame-aligned", num_labels=3, **tiny_backbone_settings(model_type)
        )
        assert type(AutoModelForAudioClassification.from_config(config)) is model_class
        assert getattr(modeling, model_class.__name__) is model_class


@pytest.mark.parametrize("model_type, conv_stride, hop", [("wavlm", (5, 2, 2), 20), ("data2vec-audio", (5, 4, 4), 80)])
def test_timeline_frame_rate_comes_from_each_backbones_conv_stack(model_type, conv_stride, hop, tmp_path):
    from transformers import pipeline

    model = tiny_model(model_type, conv_stride=conv_stride)
    model.save_pretrained(tmp_path)
    make_feature_extractor().save_pretrained(tmp_path)
    waveform = load_audio(polish3_clips(1)[0][0])[:8000]
    timeline = pipeline("frame-aligned-emotion", model=str(tmp_path), device="cpu")
    result = timeline(waveform, smoothing="none", return_frames=True)
    assert timeline.frame_duration == result["frame_duration_s"] == hop / 16000
    assert result["num_frames"] == (len(waveform) - frame_geometry(model.config).receptive_field) // hop + 1
    with torch.no_grad():
        inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
        expected = model(**inputs).frame_logits.softmax(-1)[0]
    np.testing.assert_allclose(result["frames"]["probabilities"], expected.numpy(), atol=1e-5)


def test_readme_backbones_snippet_runs(tmp_path, capsys):
    """docs/model.md "Backbones": the snippet as written, with its Hub ids pointing at tiny checkpoints saved by
    transformers' own WavLMModel / HubertModel (the Hub is not reachable here)."""
    readme = (REPO / "docs" / "model.md").read_text()
    section = readme.split("## Backbones", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    for model_type, hub_id in (("wavlm", "microsoft/wavlm-base-plus"), ("hubert", "facebook/hubert-base-ls960")):
        assert hub_id in snippet and hub_id in readme.split("## Backbones", 1)[1].split("```", 1)[0]
        save_plain_backbone(model_type, tmp_path / model_type)
        snippet = snippet.replace(f'"{hub_id}"', repr(str(tmp_path / model_type)))
    exec(compile(snippet, "docs/model.md", "exec"), {})
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith("WavLMForFrameAlignedClassification HubertForFrameAlignedClassification torch.Size([3])")
    )
    for name in ("iemocap_wavlm", "iemocap_hubert"):
        assert f"configs/{name}.yaml" in section and (REPO / "configs" / f"{name}.yaml").is_file()
