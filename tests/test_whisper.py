"""Whisper's encoder behind the frame-aligned head (`modeling_whisper_frame_aligned.py`), checked against transformers'
own Whisper classes (tiny configs, saved locally) on real polish3 speech: the encoder tensors of every kind of Whisper
checkpoint load unchanged, the log-mel equals `WhisperFeatureExtractor`'s, a padded batch equals one-by-one, the
30 s-padded mode equals `WhisperForAudioClassification`'s encoder, and bad inputs are refused by name. The train.py →
score.py / predict.py (torch, ONNX) / Hub round trip is in `test_backbone_matrix.py` ("whisper")."""

import numpy as np
import pytest
import torch
import transformers
from helpers import POLISH3_LABELS, TINY_WHISPER, polish3_clips, save_plain_backbone
from torch import nn

from modeling import AutoModelForFrameAlignedClassification, WhisperFrameAlignedConfig, load_audio
from modeling.collator import make_feature_extractor
from modeling.frames import frame_geometry, frames_for_samples
from modeling.modeling_whisper_frame_aligned import WhisperForFrameAlignedClassification, whisper_log_mel
from modeling.prefix_cache.model import prefix_cache_problem


LABELS = dict(
    num_labels=3, id2label=dict(enumerate(POLISH3_LABELS)), label2id={n: i for i, n in enumerate(POLISH3_LABELS)}
)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Four real clips of different lengths, cut to at most 3 s (keeps the test fast)."""
    return [load_audio(path)[:48_000] for path, _ in polish3_clips(4)]


def whisper_model(**settings) -> WhisperForFrameAlignedClassification:
    torch.manual_seed(0)
    model = WhisperForFrameAlignedClassification(WhisperFrameAlignedConfig(**TINY_WHISPER, **LABELS, **settings))
    return model.eval()


@pytest.mark.parametrize(
    "model_class", ["WhisperModel", "WhisperForConditionalGeneration", "WhisperForAudioClassification"]
)
def test_every_whisper_checkpoint_loads_its_encoder_unchanged_and_no_decoder(model_class, tmp_path):
    reference = save_plain_backbone("whisper", tmp_path, model_class=model_class)
    model = AutoModelForFrameAlignedClassification.from_pretrained(tmp_path, start_new_head=True, **LABELS)
    assert isinstance(model, WhisperForFrameAlignedClassification)
    encoder = reference.get_encoder() if hasattr(reference, "get_encoder") else reference.encoder
    expected, ours = encoder.state_dict(), model.model.encoder.state_dict()
    assert sorted(ours) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(ours[name], tensor), name
    assert not any("decoder" in name or "proj_out" in name for name in model.state_dict())
    assert model.new_head_keys == ["classifier.bias", "classifier.weight", "pooler.score.bias", "pooler.score.weight"]
    with pytest.raises(ValueError, match="random weights"):  # to predict, a plain checkpoint has no head
        AutoModelForFrameAlignedClassification.from_pretrained(tmp_path, **LABELS)


def test_log_mel_equals_whisper_feature_extractor_per_clip_in_a_padded_batch(clips):
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    batch = make_feature_extractor(WhisperFrameAlignedConfig())(
        clips, sampling_rate=16_000, padding="longest", return_tensors="pt"
    )
    mel = whisper_log_mel(batch["input_values"], batch["attention_mask"].sum(-1), 80)
    for row, clip in enumerate(clips):
        expected = extractor(clip, sampling_rate=16_000, padding="longest").input_features[0]
        assert expected.shape[-1] == len(clip) // 160
        np.testing.assert_allclose(mel[row, :, : expected.shape[-1]].numpy(), expected, atol=2e-5)
        assert not mel[row, :, expected.shape[-1] :].any()


def test_padded_batch_equals_one_by_one_and_frame_mask_counts_each_clips_frames(clips):
    model = whisper_model(pooling="cls_attention")
    batch = make_feature_extractor(model.config)(clips, sampling_rate=16_000, padding="longest", return_tensors="pt")
    assert batch["input_values"].abs().max() == max(np.abs(clip).max() for clip in clips)  # not normalised
    with torch.no_grad():
        batched = model(**batch)
        for row, clip in enumerate(clips):
            alone = model(torch.tensor(clip)[None])
            frames = int(alone.frame_mask.sum())
            expected_frames = frames_for_samples(len(clip), *frame_geometry(model.config))
            assert frames == alone.frame_embeddings.shape[1] == expected_frames
            assert int(batched.frame_mask[row].sum()) == frames
            torch.testing.assert_close(batched.logits[row], alone.logits[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batched.frame_logits[row, :frames], alone.frame_logits[0], atol=1e-5, rtol=0)
            torch.testing.assert_close(batched.frame_weights[row, :frames], alone.frame_weights[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("samples", [160, 319, 320, 479, 480, 16_000, 16_159, 64_080])
def test_frame_count_is_the_frames_module_arithmetic(samples):
    model = whisper_model()
    with torch.no_grad():
        output = model(torch.zeros(1, samples) + 0.01 * torch.randn(1, samples))
    # 20 ms frames: ⌈⌊N/160⌋/2⌉ from the encoder's own convolutions
    assert output.frame_embeddings.shape[1] == -(-(samples // 160) // 2) == frames_for_samples(samples, 320, 160)


def test_30_second_mode_equals_transformers_audio_classification_encoder(clips, tmp_path):
    reference = save_plain_backbone("whisper", tmp_path, model_class="WhisperForAudioClassification").eval()
    model = AutoModelForFrameAlignedClassification.from_pretrained(
        tmp_path, start_new_head=True, pad_to_30_seconds=True, **LABELS
    ).eval()
    extractor = transformers.WhisperFeatureExtractor(feature_size=80)
    features = extractor(clips[:2], sampling_rate=16_000, return_tensors="pt").input_features  # padded to 30 s
    batch = make_feature_extractor(model.config)(
        clips[:2], sampling_rate=16_000, padding="longest", return_tensors="pt"
    )
    with torch.no_grad():
        expected = reference.encoder(features).last_hidden_state
        ours = model(**batch, output_hidden_states=True)
    assert ours.hidden_states[-1].shape == expected.shape == (2, 1500, 32)
    torch.testing.assert_close(ours.hidden_states[-1], expected, atol=1e-5, rtol=0)
    # pooling reads the clips' own frames only
    assert ours.frame_mask.sum(-1).tolist() == [frames_for_samples(len(c), 320, 160) for c in clips[:2]]
    # and the variable-length mode differs from it (the padding is attended to in the 30 s mode)
    model.config.pad_to_30_seconds = False
    with torch.no_grad():
        variable = model(**batch, output_hidden_states=True).hidden_states[-1]
    frames = int(ours.frame_mask[0].sum())
    assert (variable[0, :frames] - expected[0, :frames]).abs().max() > 1e-3


def test_clip_longer_than_30_seconds_is_encoded_in_30_second_windows():
    model = whisper_model(pooling="mean")
    torch.manual_seed(1)
    long = 0.05 * torch.randn(1, 480_000 + 16_000)  # 31 s: 1550 frames
    short = 0.05 * torch.randn(1, 32_000)
    with torch.no_grad():
        assert model(long[:, :480_000]).frame_embeddings.shape[1] == 1500  # exactly 30 s: one window
        output = model.model(long).last_hidden_state
        first = model.model(long[:, :480_000]).last_hidden_state
        second = model.model(long[:, 480_000:]).last_hidden_state
        assert output.shape[1] == 1550 == frames_for_samples(long.shape[1], 320, 160)
        torch.testing.assert_close(output, torch.cat([first, second], dim=1))
        # in a padded batch, a short clip keeps its one-by-one output and the long clip its windows
        batch = torch.cat([long, nn.functional.pad(short, (0, long.shape[1] - short.shape[1]))])
        mask = torch.zeros(batch.shape, dtype=torch.long)
        mask[0], mask[1, : short.shape[1]] = 1, 1
        batched = model(batch, attention_mask=mask)
        assert batched.frame_mask.sum(-1).tolist() == [1550, 100]
        torch.testing.assert_close(batched.logits[1], model(short).logits[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.logits[0], model(long).logits[0], atol=1e-5, rtol=0)
        with pytest.raises(ValueError, match=r"output_attentions=True on input_values of 496000 samples \(31.00 s\)"):
            model(long, output_attentions=True)


SPEC_AUGMENT = dict(
    apply_spec_augment=True,
    mask_time_prob=0.6,
    mask_time_length=10,
    mask_time_min_masks=2,
    mask_feature_prob=0.2,
    mask_feature_length=8,
    mask_feature_min_masks=1,
)


def test_spec_augment_masks_each_clips_own_log_mel_frames_as_transformers_whisper_in_training_only(clips):
    """SpecAugment (refused for Whisper before): in training the log-mel entering conv1 is 0 exactly at the spans
    transformers' `_compute_mask_indices` draws (same numpy seed) over each clip's own mel frames, then the mel-bin
    bands; every other value is the unmasked log-mel; padding is never drawn. Evaluation is unchanged."""
    from transformers.models.whisper.modeling_whisper import _compute_mask_indices

    model, plain = whisper_model(**SPEC_AUGMENT), whisper_model()
    batch = make_feature_extractor(model.config)(clips, sampling_rate=16_000, padding="longest", return_tensors="pt")
    lengths = batch["attention_mask"].sum(-1)
    mel = whisper_log_mel(batch["input_values"], lengths, 80)
    rows, frames = mel.shape[0], mel.shape[-1]
    valid = torch.arange(frames)[None, :] < (lengths // 160)[:, None]
    assert (~valid).any()  # a padded batch
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, plain(**batch).logits)  # eval: no masking
    captured = []
    model.model.encoder.conv1.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().clone()))
    np.random.seed(7)
    model.train()(**batch)
    np.random.seed(7)
    time = torch.tensor(_compute_mask_indices((rows, frames), 0.6, 10, attention_mask=valid.long(), min_masks=2))
    bins = torch.tensor(_compute_mask_indices((rows, 80), 0.2, 8, min_masks=1))
    assert not (time & ~valid).any() and time.sum(-1).min() >= 10 and bins.sum(-1).min() >= 8
    masked = time[:, None, :] | bins[:, :, None]
    assert torch.equal(captured[0][masked], torch.zeros(int(masked.sum())))
    torch.testing.assert_close(captured[0][~masked], mel[~masked], atol=0, rtol=0)
    # the valid length matters: the same draw over the padded length would mask padding
    np.random.seed(7)
    assert (torch.tensor(_compute_mask_indices((rows, frames), 0.6, 10, min_masks=2)) & ~valid).any()
    # 30 s mode: the encoder reads the 30 s of padding, but spans are drawn within the clip's own frames
    padded = whisper_model(
        **{**SPEC_AUGMENT, "mask_feature_prob": 0.0, "mask_feature_min_masks": 0}, pad_to_30_seconds=True
    )
    captured.clear()
    padded.model.encoder.conv1.register_forward_pre_hook(lambda _, args: captured.append(args[0].detach().clone()))
    padded.train()(**batch)
    full = whisper_log_mel(
        nn.functional.pad(batch["input_values"], (0, 480_000 - batch["input_values"].shape[1])),
        torch.full((rows,), 480_000),
        80,
    )
    zeroed = (captured[0] != full).any(dim=1)  # (rows, 3000): frames the mask changed
    assert zeroed.any() and not zeroed[:, frames:].any() and not (zeroed[:, :frames] & ~valid).any()


def test_bad_inputs_and_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="pad_to_30_seconds"):
        WhisperFrameAlignedConfig(**TINY_WHISPER, pad_to_30_seconds="yes")
    with pytest.raises(ValueError, match="num_trainable_layers"):
        WhisperFrameAlignedConfig(**TINY_WHISPER, num_trainable_layers=3)
    model = whisper_model()
    with pytest.raises(ValueError, match="has no samples"):
        model(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="output_hidden_states must be True or False"):
        model(torch.full((1, 1600), 0.01), output_hidden_states=[0, 1])
    with torch.no_grad():  # shorter than one mel hop: padded to one frame, as for the other backbones
        assert model(torch.full((1, 100), 0.01)).frame_mask.tolist() == [[True]]
    problem = prefix_cache_problem(WhisperForFrameAlignedClassification, model.config)
    assert "Whisper's log-mel and conv stem" in problem and "cache_frozen_prefix: false" in problem


def test_freezing_keeps_the_conv_stem_positions_and_lower_layers_fixed_and_layer_sum_reads_every_layer():
    model = whisper_model(num_trainable_layers=1, use_weighted_layer_sum=True).train()
    model.freeze_for_training()
    encoder = model.model.encoder
    frozen = [encoder.conv1, encoder.conv2, encoder.embed_positions, encoder.layers[0]]
    assert not any(p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for module in (encoder.layers[1], encoder.layer_norm) for p in module.parameters())
    output = model(torch.full((2, 8000), 0.01) + 0.01 * torch.randn(2, 8000), labels=torch.tensor([0, 1]))
    output.loss.backward()
    assert model.layer_weights.grad is not None and encoder.layers[0].fc1.weight.grad is None
    with torch.no_grad():
        states = model.model(torch.full((1, 8000), 0.01), output_hidden_states=True)
    assert len(states.hidden_states) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(states.hidden_states[-1], states.last_hidden_state)


def test_a_training_config_with_whisper_spec_augment_is_accepted_and_reaches_both_stages(tmp_path):
    """The config check built the stages' model configs, which refused `apply_spec_augment: true` for Whisper."""
    from runs import write_config

    from modeling.training.config_checks import check_training_setup, stage_model_config
    from modeling.training.run_config import resolve_config

    whisper = {"model_type": "whisper", **TINY_WHISPER}
    overrides = {"apply_spec_augment": True, "mask_time_prob": 0.3, "mask_feature_prob": 0.1}
    config = resolve_config(
        write_config(tmp_path / "w.yaml", model={"random_init": whisper, "config_overrides": overrides})
    )
    assert check_training_setup(config) == []
    backbone = WhisperFrameAlignedConfig(**TINY_WHISPER).to_dict()
    for stage in ("stage1", "stage2"):
        built = stage_model_config(config, stage, backbone)
        assert (built.apply_spec_augment, built.mask_time_prob, built.mask_feature_prob) == (True, 0.3, 0.1)
