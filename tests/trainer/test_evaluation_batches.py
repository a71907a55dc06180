"""A clip's evaluation scores never depend on its batch-mates.

A fresh user found train.py's reported test predictions differing from predict.py's on the same checkpoint and clips
(probabilities up to 0.34 apart, 8 of 90 labels, fold 1's test UA 32.22 % vs 30.00 %), and score.py giving a clip
other probabilities depending on which other clips the corpus held: evaluation batched zero-padded clips, and a
group-norm backbone (wav2vec2-base, the tiny config here) normalises and attends over that padding. Evaluation,
scoring and the pipeline now batch such a model one clip at a time (`evaluation_batch_size`); a backbone that
cannot see padding keeps its batches.
"""

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import layer_norm_overrides, polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.audio import audio_duration
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.sampling import chunk, evaluation_batch_size, evaluation_batches, longest_first
from modeling.training.scoring import predict


@pytest.fixture(scope="module")
def dataset():
    clips = polish3_clips(6)
    paths = [path for path, _ in clips]
    return Dataset.from_dict(
        {"audio": paths, "label": [label for _, label in clips], "duration_s": [audio_duration(p) for p in paths]}
    )


def make_model(**overrides):
    torch.manual_seed(0)
    return Wav2Vec2ForFrameAlignedClassification(tiny_config(**overrides)).eval()


@torch.no_grad()
def one_by_one(model, dataset) -> np.ndarray:
    """(N, num_labels) logits of each clip alone, in row order."""
    collator = AudioClassificationCollator(make_feature_extractor(model.config))
    return np.stack([model(**collator([row])).logits[0].numpy() for row in dataset.remove_columns("label")])


def test_group_norm_scores_are_each_clips_own_whatever_the_batch(dataset):
    model = make_model()
    assert not model.config.padding_independent and evaluation_batch_size(8, model.config) == 1
    alone = one_by_one(model, dataset)
    # scoring (train.py's reports, score.py) with eval batch size 4, on the corpus and on a part of it
    np.testing.assert_allclose(predict(model, dataset, batch_size=4).logits, alone, atol=1e-5)
    part = dataset.select([0, 2, 5])
    np.testing.assert_allclose(predict(model, part, batch_size=4).logits, alone[[0, 2, 5]], atol=1e-5)
    # the premise: padded batches of this backbone would have changed them
    collator = AudioClassificationCollator(make_feature_extractor(model.config))
    with torch.no_grad():
        padded = model(**collator(list(dataset.remove_columns("label")))).logits.numpy()
    assert np.abs(padded - alone).max() > 1e-3


def test_trainer_evaluation_selects_on_the_clips_own_scores(tmp_path, dataset):
    """Checkpoint selection (`FrameAlignedTrainer` evaluation/predict, eval batch size 4) gives each clip's own
    logits, in longest-first order, and says once why the batch size is not used."""
    model = make_model()
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path),
        per_device_eval_batch_size=4,
        report_to=[],
        remove_unused_columns=False,
        use_cpu=True,
        eval_longest_first=True,
        disable_tqdm=True,
    )
    collator = AudioClassificationCollator(make_feature_extractor(model.config))
    trainer = FrameAlignedTrainer(model=model, args=args, eval_dataset=dataset, data_collator=collator)
    output = trainer.predict(dataset)
    order = longest_first(dataset)
    np.testing.assert_allclose(output.predictions, one_by_one(model, dataset)[order], atol=1e-5)
    assert trainer._told_evaluation_batch_size


def test_a_backbone_that_cannot_see_padding_keeps_its_batches(dataset):
    model = make_model(**layer_norm_overrides())
    assert model.config.padding_independent and evaluation_batch_size(4, model.config) == 4
    assert evaluation_batches(dataset, 4, model.config) == chunk(longest_first(dataset), 4)
    np.testing.assert_allclose(predict(model, dataset, batch_size=4).logits, one_by_one(model, dataset), atol=1e-5)
    # a config that forces the mask onto a group-norm backbone still sees padding in its first conv's norm
    assert not make_model(backbone_attention_mask=True).config.padding_independent
