"""Wav2Vec2ForFrameAlignedClassification: outputs, padding, save/load, stage 1 → stage 2, freezing."""

import pytest
import torch
from helpers import layer_norm_overrides, polish3_clips, tiny_config
from transformers import Wav2Vec2ForPreTraining

from modeling import POOLING_TYPES, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return Wav2Vec2ForFrameAlignedClassification(tiny_config(**overrides)).eval()


@pytest.fixture(scope="module")
def batch():
    """Three real clips of different lengths, padded: input_values (3, N), attention_mask (3, N), labels (3,)."""
    collator = AudioClassificationCollator(make_feature_extractor())
    return collator([{"audio": path, "label": label} for path, label in polish3_clips(3)])


def inputs(batch):
    return {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"]}


def expected_num_valid_frames(num_samples: int, config) -> int:
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


@pytest.mark.parametrize("pooling", POOLING_TYPES)
def test_outputs_have_documented_shapes_and_alpha_is_a_distribution_over_valid_frames(pooling, batch):
    model = make_model(pooling=pooling)
    with torch.no_grad():
        out = model(**inputs(batch))
    batch_size, num_frames = out.frame_mask.shape
    assert out.logits.shape == (3, 3)
    assert out.frame_logits.shape == (3, num_frames, 3)
    assert out.frame_embeddings.shape == (3, num_frames, 32)
    assert out.utterance_embedding.shape == (3, 32)
    # frame mask from the true lengths, whether or not the backbone saw the attention mask
    lengths = batch["attention_mask"].sum(-1).tolist()
    assert out.frame_mask.sum(-1).tolist() == [expected_num_valid_frames(n, model.config) for n in lengths]
    assert torch.all(out.frame_weights[~out.frame_mask] == 0)
    torch.testing.assert_close(out.frame_weights.sum(-1), torch.ones(3))
    assert out.loss is None
    # CE when labels are given
    with torch.no_grad():
        loss = model(**inputs(batch)).logits.log_softmax(-1).gather(1, batch["labels"][:, None]).mean().neg()
        assert model(**inputs(batch), labels=batch["labels"]).loss.item() == pytest.approx(loss.item(), rel=1e-6)


def test_mean_pooling_is_the_average_of_valid_frames(batch):
    model = make_model(pooling="mean")
    with torch.no_grad():
        out = model(**inputs(batch))
    for i in range(3):
        valid = out.frame_embeddings[i, out.frame_mask[i]]
        torch.testing.assert_close(out.utterance_embedding[i], valid.mean(0))


def test_cls_attention_alpha_is_softmax_of_scaled_cls_frame_similarity(batch):
    model = make_model(pooling="cls_attention")
    with torch.no_grad():
        out = model(**inputs(batch))
    i = 1
    valid = out.frame_mask[i]
    scores = out.frame_embeddings[i, valid] @ out.utterance_embedding[i] / 32**0.5
    torch.testing.assert_close(out.frame_weights[i, valid], scores.softmax(-1))


def test_return_dict_false_and_backbone_hidden_states_and_attentions(batch):
    model = make_model(attn_implementation="eager")
    with torch.no_grad():
        out = model(**inputs(batch), output_hidden_states=True, output_attentions=True)
        as_tuple = model(**inputs(batch), return_dict=False)
    assert len(out.hidden_states) == 3  # embeddings + 2 layers
    assert len(out.attentions) == 2 and out.attentions[0].shape[:2] == (3, 2)
    torch.testing.assert_close(as_tuple[0], out.logits)


@pytest.mark.parametrize("pooling", POOLING_TYPES)
def test_layer_norm_backbone_is_padding_invariant(pooling, batch):
    """A clip alone gives the same logits and α as the same clip padded next to a longer one."""
    model = make_model(pooling=pooling, **layer_norm_overrides())
    assert model.config.use_backbone_attention_mask
    shortest = int(batch["attention_mask"].sum(-1).argmin())
    length = int(batch["attention_mask"][shortest].sum())
    with torch.no_grad():
        padded = model(**inputs(batch))
        alone = model(
            input_values=batch["input_values"][shortest : shortest + 1, :length],
            attention_mask=batch["attention_mask"][shortest : shortest + 1, :length],
        )
    num_valid = alone.frame_mask.shape[1]
    torch.testing.assert_close(padded.logits[shortest], alone.logits[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        padded.frame_weights[shortest, :num_valid], alone.frame_weights[0], atol=1e-6, rtol=1e-4
    )
    assert padded.frame_mask[shortest].sum() == num_valid


def test_group_norm_backbone_gets_no_mask_but_alpha_and_pooling_ignore_padding(batch):
    model = make_model(pooling="cls_attention")
    assert not model.config.use_backbone_attention_mask
    seen = {}
    hook = model.wav2vec2.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(mask=kwargs.get("attention_mask")), with_kwargs=True
    )
    with torch.no_grad():
        out = model(**inputs(batch))
    hook.remove()
    assert seen["mask"] is None
    shortest = int(out.frame_mask.sum(-1).argmin())
    assert not out.frame_mask[shortest].all()
    assert torch.all(out.frame_weights[shortest, ~out.frame_mask[shortest]] == 0)

    # Garbage in the padded frames' backbone output changes nothing downstream of the backbone.
    hidden = model.wav2vec2(batch["input_values"]).last_hidden_state.detach()
    corrupted = hidden.clone()
    corrupted[~out.frame_mask] = 1e3
    with torch.no_grad():
        clean = model.pooler(hidden, out.frame_mask)
        dirty = model.pooler(corrupted, out.frame_mask)
    torch.testing.assert_close(clean[0], dirty[0])
    torch.testing.assert_close(clean[2], dirty[2])


@pytest.mark.parametrize("pooling", POOLING_TYPES)
def test_save_and_load_round_trip_gives_identical_logits(pooling, batch, tmp_path):
    model = make_model(pooling=pooling)
    model.save_pretrained(tmp_path)
    loaded = Wav2Vec2ForFrameAlignedClassification.from_pretrained(tmp_path).eval()
    assert loaded.dropped_checkpoint_keys == []
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs(batch)).logits, model(**inputs(batch)).logits, rtol=0, atol=0)
    assert loaded.config.id2label == {0: "anger", 1: "fear", 2: "neutral"}


def test_stage1_to_stage2_keeps_backbone_bit_for_bit_and_starts_a_new_head(tmp_path):
    stage1 = make_model(pooling="attentive")
    stage1.save_pretrained(tmp_path / "stage1")
    torch.manual_seed(123)
    stage2, info = Wav2Vec2ForFrameAlignedClassification.from_pretrained(
        tmp_path / "stage1", pooling="cls_attention", num_trainable_layers=1, eal_weight=0.1, output_loading_info=True
    )
    assert stage2.config.pooling == "cls_attention" and stage2.config.eal_weight == 0.1
    for name, tensor in stage1.wav2vec2.state_dict().items():
        assert torch.equal(tensor, stage2.wav2vec2.state_dict()[name]), name
    assert stage2.dropped_checkpoint_keys == [
        "pooler.score.bias",
        "pooler.score.weight",
        "classifier.bias",
        "classifier.weight",
    ]
    assert "pooler.cls_token" in info["missing_keys"]
    assert_fresh_head(stage2)
    # the stage-1 classifier (trained on another pooling's output) is not kept
    assert not torch.equal(stage2.classifier.weight, stage1.classifier.weight)


def test_plain_wav2vec2_checkpoint_initialises_head_properly(tmp_path):
    """from_pretrained builds on the meta device: new parameters must come from _init_weights, not __init__."""
    config = tiny_config()
    torch.manual_seed(0)
    backbone = Wav2Vec2ForPreTraining(config)
    backbone.save_pretrained(tmp_path)
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(tmp_path, pooling="cls_attention")
    for name, tensor in backbone.wav2vec2.state_dict().items():
        assert torch.equal(tensor, model.wav2vec2.state_dict()[name]), name
    assert_fresh_head(model)


def assert_fresh_head(model):
    std = model.config.initializer_range
    cls_token = model.pooler.cls_token
    assert torch.isfinite(cls_token).all() and 0.3 * std < cls_token.std() < 3 * std
    layer = model.pooler.encoder.layers[0]
    assert torch.equal(layer.layer_norm.weight, torch.ones_like(layer.layer_norm.weight))
    assert torch.count_nonzero(layer.attention.q_proj.bias) == 0
    for linear in (layer.attention.q_proj, layer.feed_forward.intermediate_dense, model.classifier):
        assert 0.5 * std < linear.weight.std() < 2 * std
    assert torch.count_nonzero(model.classifier.bias) == 0


def test_freeze_for_training_follows_the_config_after_loading(tmp_path):
    make_model(pooling="attentive", num_hidden_layers=4).save_pretrained(tmp_path)
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(
        tmp_path, pooling="cls_attention", num_trainable_layers=1
    )
    assert all(p.requires_grad for p in model.parameters())  # requires_grad is not saved: nothing frozen yet
    model.freeze_for_training()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert model.wav2vec2.feature_extractor._requires_grad is False
    assert not any(name.startswith("wav2vec2.feature_extractor.") for name in trainable)
    assert not any(name.startswith("wav2vec2.feature_projection.") for name in trainable)
    assert not any(name.startswith("wav2vec2.encoder.pos_conv_embed.") for name in trainable)
    for i in range(3):
        assert not any(name.startswith(f"wav2vec2.encoder.layers.{i}.") for name in trainable)
    assert any(name.startswith("wav2vec2.encoder.layers.3.") for name in trainable)
    assert "pooler.cls_token" in trainable and "classifier.weight" in trainable

    model.config.num_trainable_layers = None  # it only ever turns requires_grad off: what is frozen stays frozen
    model.freeze_for_training()
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable

    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(tmp_path)  # stage 1: every layer trains, no CNN
    model.freeze_for_training()
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("wav2vec2.feature_extractor.") for name in frozen)
    model.classifier.requires_grad_(False)  # the caller's own choice is kept
    model.freeze_for_training()
    assert not model.classifier.weight.requires_grad


def test_frozen_cnn_gets_no_gradient(batch):
    model = make_model(pooling="cls_attention", num_trainable_layers=1).train()
    model.freeze_for_training()
    model(**inputs(batch), labels=batch["labels"]).loss.backward()
    assert all(p.grad is None for p in model.wav2vec2.feature_extractor.parameters())
    assert all(p.grad is None for p in model.wav2vec2.encoder.layers[0].parameters())
    assert all(p.grad is not None for p in model.wav2vec2.encoder.layers[1].parameters())


def test_invalid_config_values_are_rejected_with_the_field_name():
    with pytest.raises(ValueError, match="pooling"):
        tiny_config(pooling="max")
    with pytest.raises(ValueError, match="num_trainable_layers"):
        tiny_config(num_trainable_layers=5)
    with pytest.raises(ValueError, match="pooling_num_heads"):
        tiny_config(pooling_num_heads=5)


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_training_on_clips_shorter_than_the_spec_augment_span_does_not_crash(norm):
    """wav2vec2 raises when a batch has fewer frames than `mask_time_length`: such batches are padded (masked)."""
    overrides = layer_norm_overrides() if norm == "layer" else {}
    model = make_model(mask_time_prob=0.5, mask_time_length=10, **overrides).train()
    short = torch.randn(2, 120)  # 120 samples → 5 frames with the tiny conv stack (stride 20)
    out = model(short, attention_mask=torch.ones(2, 120, dtype=torch.long), labels=torch.tensor([0, 1]))
    assert out.frame_mask.shape[1] >= 10 and out.frame_mask.sum(-1).tolist() == [5, 5]
    assert torch.isfinite(out.loss) and torch.all(out.frame_weights[:, 5:] == 0)
    out = model(short[:1])  # no attention mask: the padding is still excluded from the frames
    assert out.frame_mask.sum().item() == 5
    model.eval()
    assert model(short[:1]).frame_mask.shape[1] == 5  # inference is untouched


def test_weighted_layer_sum_refuses_layerdrop_in_training_and_works_in_eval(batch):
    """transformers ≥ 5 records a hidden state only for the layers that run: with LayerDrop the weighted sum met fewer
    states than weights at a random training step (the common test's retain-grad run crashed now and then)."""
    model = make_model(use_weighted_layer_sum=True, layerdrop=0.5)
    with torch.no_grad():
        logits = model(**inputs(batch)).logits  # eval: LayerDrop is off, every layer runs
    assert logits.shape == (3, 3)
    model.train()
    with pytest.raises(ValueError, match=r"layerdrop=0\.5 skips random layers"):
        model(**inputs(batch))
    with pytest.raises(ValueError, match="3 weights .* but got 2 hidden states"):
        model.weighted_layer_sum(tuple(torch.zeros(3, 4, 32) for _ in range(2)))
