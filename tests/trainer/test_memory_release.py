"""A finished stage's model is freed when its last reference goes, without a garbage collection (issue 21, item 8):
accelerate's bf16 forward patch made a reference cycle that kept the model (on a GPU: its memory) alive."""

import gc
import weakref

import pytest
from datasets import Dataset
from helpers import polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.memory import release_trainer


@pytest.fixture
def no_garbage_collection():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


def train_one_step(tmp_path) -> tuple[weakref.ref, FrameAlignedTrainer]:
    clips = polish3_clips(2)
    dataset = Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]})
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config())
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=1,
        bf16=True,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    collator = AudioClassificationCollator(make_feature_extractor(), max_length_seconds=0.5)
    trainer = FrameAlignedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    return weakref.ref(model), trainer


def test_a_released_stage_frees_its_model_without_a_garbage_collection(tmp_path, no_garbage_collection):
    model, trainer = train_one_step(tmp_path)
    assert type(model()).forward is not model().forward.__func__  # accelerate's autocast patch is in place
    release_trainer(trainer)
    del trainer
    assert model() is None
