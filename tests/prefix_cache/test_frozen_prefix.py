"""The stage-2 frozen-prefix cache reproduces the uncached model: logits, losses, gradients and training steps."""

import copy
import pickle
import re

import pytest
import torch
from helpers import BACKBONES as MODEL_TYPES
from helpers import layer_norm_overrides, polish3_clips, tiny_config, tiny_frame_aligned_model

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.prefix_cache.cache import FrozenPrefixCache, FrozenPrefixCollator, build_prefix_cache
from modeling.prefix_cache.model import (
    FrozenPrefixModel,
    disable_frozen_prefix_regularization,
    is_padding_independent,
)
from modeling.prefix_cache.trainer import FrozenPrefixTrainer, ReplayBatchesSampler
from modeling.trainer.trainer import auxiliary_losses


BACKBONES = {"group_norm": {}, "layer_norm": layer_norm_overrides()}
ATOL = 1e-5


def stage2_model(seed: int = 0, **overrides) -> Wav2Vec2ForFrameAlignedClassification:
    """4 layers, the lower 2 frozen (the cut is at layer 2)."""
    torch.manual_seed(seed)
    config = tiny_config(num_hidden_layers=4, num_trainable_layers=2, **overrides)
    model = Wav2Vec2ForFrameAlignedClassification(config)
    model.freeze_for_training()
    return model


@pytest.fixture(scope="module")
def clips():
    return [{"audio": path, "label": label} for path, label in polish3_clips(6)]


@pytest.fixture(scope="module")
def collator():
    return AudioClassificationCollator(make_feature_extractor())


def total_loss(outputs, config):
    terms = auxiliary_losses(outputs, config)
    return outputs.loss + config.eal_weight * terms["loss_eal"] + config.fual_weight * terms["loss_fual"], terms


def cached_batch(cache, indices):
    return FrozenPrefixCollator()([cache[i] for i in indices])


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_cached_forward_and_gradients_match_uncached(backbone, clips, collator):
    model = stage2_model(**BACKBONES[backbone])
    model.train()  # dropout/LayerDrop/SpecAugment are 0 in the tiny config: train mode is deterministic
    everything = list(range(len(clips)))
    batch = collator(clips)
    assert batch["attention_mask"].sum(-1).unique().numel() == len(clips)  # a genuinely padded batch

    # A padding-independent backbone may be cached in any batches; a group-norm one is replayed as cached.
    cache_batches = [[0, 5, 2], [4, 1, 3]] if is_padding_independent(model.config) else [everything]
    cache = build_prefix_cache(model, clips, collator, dtype=torch.float32, batches=cache_batches)
    assert (cache.batches is None) == is_padding_independent(model.config)

    uncached = model(**batch)
    loss, terms = total_loss(uncached, model.config)
    loss.backward()
    uncached_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    top = FrozenPrefixModel(model)
    top.train()
    cached = top(**cached_batch(cache, everything))
    cached_loss, cached_terms = total_loss(cached, model.config)
    cached_loss.backward()
    cached_grads = {name: p.grad.clone() for name, p in top.named_parameters() if p.grad is not None}

    torch.testing.assert_close(cached.logits, uncached.logits, atol=ATOL, rtol=0)
    valid = uncached.frame_mask
    torch.testing.assert_close(cached.frame_mask, valid)
    torch.testing.assert_close(cached.frame_weights, uncached.frame_weights, atol=ATOL, rtol=0)
    torch.testing.assert_close(cached.frame_logits[valid], uncached.frame_logits[valid], atol=ATOL, rtol=0)
    for name in ("loss_eal", "loss_fual"):
        torch.testing.assert_close(cached_terms[name], terms[name], atol=ATOL, rtol=0)
    torch.testing.assert_close(cached_loss, loss, atol=ATOL, rtol=0)

    assert set(cached_grads) == set(uncached_grads)
    assert any(name.startswith("wav2vec2.encoder.layers.3.") for name in cached_grads)
    assert not any(name.startswith(("wav2vec2.encoder.layers.1.", "wav2vec2.feature_")) for name in cached_grads)
    for name, grad in cached_grads.items():
        torch.testing.assert_close(grad, uncached_grads[name], atol=ATOL, rtol=1e-4, msg=name)


# The documented refusals (prefix_cache/model.py: `UNSUPPORTED_REASONS`), written out.
SUPPORTED = "('wav2vec2', 'hubert', 'data2vec_audio')"
REFUSALS = {
    "wavlm": f"WavLMForFrameAlignedClassification: the frozen-prefix cache supports the {SUPPORTED} backbones, not "
    "'wavlm' (its layers share a relative position bias computed in layer 0). Set stage2.cache_frozen_prefix: false.",
    "whisper": f"WhisperForFrameAlignedClassification: the frozen-prefix cache supports the {SUPPORTED} backbones, "
    "not 'model' (Whisper's log-mel and conv stem has no cut in prefix_cache/model.py yet). Set "
    "stage2.cache_frozen_prefix: false.",
}


@pytest.mark.parametrize("model_type", list(MODEL_TYPES))
def test_every_backbone_is_cached_exactly_or_refused_with_its_documented_reason(model_type, clips):
    """Every listed backbone: the cached top reproduces the full forward (logits, frame mask), or the cache and the
    cached model refuse it with the documented message (WavLM, Whisper), before anything runs."""
    model = tiny_frame_aligned_model(model_type, num_trainable_layers=1)
    collator_ = AudioClassificationCollator(make_feature_extractor(model.config))
    if model_type in REFUSALS:
        exact = f"^{re.escape(REFUSALS[model_type])}$"
        with pytest.raises(ValueError, match=exact):
            FrozenPrefixModel(model)
        with pytest.raises(ValueError, match=exact):
            build_prefix_cache(model, clips[:2], collator_, dtype=torch.float32)
        return
    batch = collator_(clips[:3])
    cache = build_prefix_cache(model, clips[:3], collator_, dtype=torch.float32, batches=[[0, 1, 2]])
    with torch.no_grad():
        full = model(**{key: value for key, value in batch.items() if key != "labels"})
        cached = FrozenPrefixModel(model).eval()(**cached_batch(cache, [0, 1, 2]))
    assert torch.equal(cached.frame_mask, full.frame_mask)
    torch.testing.assert_close(cached.logits, full.logits, atol=ATOL, rtol=0)


def test_state_dict_is_the_full_models(clips):
    model = stage2_model()
    top = FrozenPrefixModel(model)
    assert list(top.state_dict()) == list(model.state_dict())
    assert top.config is model.config
    trainable = {name for name, p in top.named_parameters() if p.requires_grad}
    assert trainable == {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        name.startswith(("wav2vec2.encoder.layers.2.", "wav2vec2.encoder.layers.3.", "pooler.", "classifier."))
        for name in trainable
    )


def run_training(model, dataset, collator_, trainer_class, output_dir, replay_batches, steps=3):
    args = FrameAlignedTrainingArguments(
        output_dir=str(output_dir),
        report_to=[],
        per_device_train_batch_size=3,
        max_steps=steps,
        learning_rate=1e-3,
        pooling_learning_rate=3e-3,
        warmup_steps=0,
        logging_steps=1,
        save_strategy="no",
        seed=7,
        use_cpu=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # the uncached collator reads the `audio` column
    )

    class Replaying(trainer_class):
        """The uncached run gets the batches the cache replays, in the same order."""

        def _get_train_sampler(self, train_dataset=None):
            return ReplayBatchesSampler(replay_batches, 3, shuffle=True, seed=self.args.seed)

    trainer = Replaying(model=model, args=args, train_dataset=dataset, data_collator=collator_)
    trainer.train()
    return trainer


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_training_from_cache_gives_the_same_weights(backbone, clips, collator, tmp_path):
    # Dropout ON in the trainable top and the head; the frozen prefix made deterministic in the uncached model.
    dropout = dict(hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, final_dropout=0.1)
    reference = stage2_model(**BACKBONES[backbone], **dropout)
    disable_frozen_prefix_regularization(reference)
    uncached_model, cached_model = copy.deepcopy(reference), copy.deepcopy(reference)

    cache = build_prefix_cache(cached_model, clips, collator, batch_size=3, dtype=torch.float32, lengths=[1] * 6)
    batches = cache.batches or [[0, 1, 2], [3, 4, 5]]
    if cache.batches is None:  # padding-independent: any sampler; replay fixed batches to compare step by step
        cache.batches = batches

    run_training(uncached_model, clips, collator, FrameAlignedTrainer, tmp_path / "uncached", batches)
    trainer = run_training(
        FrozenPrefixModel(cached_model),
        cache,
        FrozenPrefixCollator(),
        FrozenPrefixTrainer,
        tmp_path / "cached",
        batches,
    )

    trained = dict(cached_model.named_parameters())
    changed = 0
    for name, parameter in uncached_model.named_parameters():
        torch.testing.assert_close(trained[name], parameter, atol=ATOL, rtol=0, msg=name)
        changed += not torch.equal(parameter, dict(reference.named_parameters())[name])
    assert changed > 0  # the steps trained something
    assert {"loss_ce", "loss_eal", "loss_fual"} <= set(trainer.state.log_history[0])

    # Checkpoints of the cached run are ordinary model checkpoints.
    trainer.save_model(tmp_path / "saved")
    reloaded = Wav2Vec2ForFrameAlignedClassification.from_pretrained(tmp_path / "saved")
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, cached_model.state_dict()[name], msg=name)
    trainer._load_from_checkpoint(str(tmp_path / "saved"))  # Trainer's own reload (resume / best model)


def test_cached_trainer_evaluates_checkpoints_and_reloads_the_best(clips, collator, tmp_path):
    """The Trainer loop train.py runs: per-step eval + checkpoints + load_best_model_at_end, from float16 caches."""
    model = stage2_model()
    train_cache = build_prefix_cache(model, clips, collator, batch_size=3, lengths=list(range(6)))
    eval_cache = build_prefix_cache(model, clips[:4], collator, batch_size=1)  # group norm: one clip per eval batch
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path),
        report_to=[],
        per_device_train_batch_size=3,
        per_device_eval_batch_size=2,
        max_steps=2,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=False,
        train_sampling_strategy="group_by_length",
        use_cpu=True,
    )
    trainer = FrozenPrefixTrainer(
        model=FrozenPrefixModel(model),
        args=args,
        train_dataset=train_cache,
        eval_dataset=eval_cache,
        data_collator=FrozenPrefixCollator(),
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_loss_ce", "eval_loss_eal", "eval_loss_fual"} <= set(metrics)
    best = trainer.state.best_model_checkpoint
    reloaded = Wav2Vec2ForFrameAlignedClassification.from_pretrained(best)
    for name, tensor in reloaded.state_dict().items():
        torch.testing.assert_close(tensor, model.state_dict()[name], msg=name)


def test_disk_cache_fp16_roundtrip_and_reuse(clips, collator, tmp_path, monkeypatch):
    model = stage2_model()
    memory = build_prefix_cache(model, clips, collator, batch_size=3, dtype=torch.float32, lengths=list(range(6)))
    disk = build_prefix_cache(
        model, clips, collator, batch_size=3, dtype=torch.float16, cache_dir=tmp_path / "c", lengths=list(range(6))
    )
    assert isinstance(disk, FrozenPrefixCache) and (tmp_path / "c" / "hidden_states.bin").is_file()
    assert disk.batches == memory.batches and disk.labels == [clip["label"] for clip in clips]
    for i in range(len(clips)):
        assert disk[i]["hidden_states"].dtype == torch.float16
        torch.testing.assert_close(disk[i]["hidden_states"].float(), memory[i]["hidden_states"], atol=2e-2, rtol=1e-2)
        assert torch.equal(disk[i]["frame_mask"], memory[i]["frame_mask"])

    # A memory cache saved to disk, and a disk cache pickled into a DataLoader worker, read back the same rows.
    memory.save(tmp_path / "saved")
    saved = FrozenPrefixCache.load(tmp_path / "saved")
    unpickled = pickle.loads(pickle.dumps(disk))
    for i in range(len(clips)):
        assert torch.equal(saved[i]["hidden_states"], memory[i]["hidden_states"])
        assert torch.equal(unpickled[i]["hidden_states"], disk[i]["hidden_states"])

    # Same weights and data: the cache on disk is reused without running the prefix.
    import modeling.prefix_cache.cache as prefix_cache

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(prefix_cache, "frozen_prefix_forward", must_not_run)
    kwargs = dict(batch_size=3, dtype=torch.float16, cache_dir=tmp_path / "c", lengths=list(range(6)))
    reused = build_prefix_cache(model, clips, collator, **kwargs)
    assert reused.metadata["fingerprint"] == disk.metadata["fingerprint"]
    # Other clips (same count) or other frozen weights: stale, rebuilt.
    with pytest.raises(AssertionError, match="reused"):
        build_prefix_cache(model, clips[::-1], collator, **kwargs)
    with torch.no_grad():
        model.wav2vec2.encoder.layers[0].feed_forward.output_dense.bias.add_(1.0)
    with pytest.raises(AssertionError, match="reused"):
        build_prefix_cache(model, clips, collator, **kwargs)


def test_a_cache_on_disk_from_before_duration_s_is_rebuilt_with_the_same_batches_and_rows(clips, collator, tmp_path):
    """A run's cache written before the corpus column became `duration_s` (its Dataset had `duration`): the resumed
    run (same cache folder, Dataset now with `duration_s`) gets the same length-sorted batches and the same rows
    (the dataset fingerprint changed with the column, so it is rebuilt once)."""
    import soundfile as sf
    from datasets import Dataset

    model = stage2_model()
    clips = [clips[i] for i in (0, 3, 1, 4, 2, 5)]  # row order is not length order: batching by length shows
    seconds = [sf.info(clip["audio"]).duration for clip in clips]
    columns = {"audio": [clip["audio"] for clip in clips], "label": [clip["label"] for clip in clips]}
    kwargs = dict(batch_size=3, dtype=torch.float32, cache_dir=tmp_path / "c")
    old = build_prefix_cache(model, Dataset.from_dict({**columns, "duration": seconds}), collator, **kwargs)
    old_batches, old_rows = old.batches, [old[i]["hidden_states"].clone() for i in range(len(clips))]
    new = build_prefix_cache(model, Dataset.from_dict({**columns, "duration_s": seconds}), collator, **kwargs)
    order = sorted(range(len(clips)), key=lambda i: seconds[i])
    by_length = sorted([sorted(order[:3]), sorted(order[3:])])
    assert sorted(map(sorted, old_batches)) == sorted(map(sorted, new.batches)) == by_length
    for i in range(len(clips)):
        assert torch.equal(new[i]["hidden_states"], old_rows[i])


def test_cache_is_deterministic_with_spec_augment_and_dropout_configured(clips, collator):
    model = stage2_model(mask_time_prob=0.5, mask_time_length=2, hidden_dropout=0.2, feat_proj_dropout=0.2)
    model.train()
    first = build_prefix_cache(model, clips, collator, batch_size=3, dtype=torch.float32, lengths=list(range(6)))
    second = build_prefix_cache(model, clips, collator, batch_size=3, dtype=torch.float32, lengths=list(range(6)))
    assert model.training  # the mode is restored
    for i in range(len(clips)):
        assert torch.equal(first[i]["hidden_states"], second[i]["hidden_states"])


def test_replay_sampler_reforms_the_batches_and_checks_the_batch_size():
    batches = [[4, 0], [1, 6], [2], [3, 5]]
    sampler = ReplayBatchesSampler(batches, batch_size=2, seed=0)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        formed = [order[i : i + 2] for i in range(0, len(order), 2)]
        assert sorted(map(tuple, formed)) == sorted(map(tuple, batches)) and formed[-1] == [2]
    with pytest.raises(ValueError, match="batch_size=3"):
        ReplayBatchesSampler(batches, batch_size=3)


def test_no_frozen_layers_is_an_error(clips, collator):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(num_trainable_layers=None))
    with pytest.raises(ValueError, match="frozen transformer layers"):
        build_prefix_cache(model, clips, collator)


@pytest.mark.slow
@pytest.mark.parametrize("on_disk", [False, True])
def test_train_py_stage2_from_the_cache_end_to_end(tmp_path, on_disk):
    """`stage2.cache_frozen_prefix: true` through run_experiment: both stages finish, the frozen prefix of the stage-2
    checkpoint is bit-for-bit stage 1's, the trainable top layer did train, and the fold is scored."""
    from runs import write_config
    from safetensors.torch import load_file

    from modeling.training.experiment import run_experiment
    from modeling.training.run_config import resolve_config

    config = resolve_config(
        write_config(
            tmp_path / "cached.yaml",
            stage2={"epochs": 2, "cache_frozen_prefix": True, "prefix_cache_on_disk": on_disk},
        )
    )
    results = run_experiment(config, tmp_path / "run", folds="1")
    fold = results["folds"]["1"]
    assert 0.0 <= fold["test"]["ua"] <= 1.0 and fold["checkpoint"] == "fold1/stage2/best"
    stage1 = load_file(tmp_path / "run" / "fold1" / "stage1" / "best" / "model.safetensors")
    stage2 = load_file(tmp_path / "run" / "fold1" / "stage2" / "best" / "model.safetensors")
    frozen = [
        k
        for k in stage1
        if k.startswith(("wav2vec2.feature_", "wav2vec2.encoder.layers.0.", "wav2vec2.encoder.pos_conv"))
    ]
    assert frozen and all(torch.equal(stage1[k], stage2[k]) for k in frozen)
    top = [k for k in stage1 if k.startswith("wav2vec2.encoder.layers.1.")]
    assert top and any(not torch.equal(stage1[k], stage2[k]) for k in top)
    assert (tmp_path / "run" / "fold1" / "stage2" / "prefix_cache").is_dir() == on_disk
