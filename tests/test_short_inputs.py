"""Inputs shorter than the conv stack's receptive field (400 samples = 25 ms for wav2vec2's stack): the model pads them
to one frame in `forward`, so transformers' audio-classification pipeline, the model itself and the Trainer all give a
prediction (issue 15: an 80-sample array raised "Kernel size can't be greater than actual input size")."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import POLISH3_LABELS, layer_norm_overrides, tiny_config
from transformers import pipeline

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.frames import frame_geometry
from modeling.trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments


pytestmark = pytest.mark.bad_input
SHORT = {"80 samples (5 ms)": 80, "1 sample": 1}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny model with wav2vec2's 7-layer conv stack (receptive field 400 samples), saved with its extractor."""
    directory = tmp_path_factory.mktemp("short")
    model = short_model()
    assert frame_geometry(model.config).receptive_field == 400
    model.save_pretrained(directory)
    make_feature_extractor().save_pretrained(directory)
    return directory, model


def short_model(**overrides) -> Wav2Vec2ForFrameAlignedClassification:
    torch.manual_seed(0)
    config = tiny_config(
        conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_dim=(16,) * 7, **overrides
    )
    return Wav2Vec2ForFrameAlignedClassification(config).eval()


def waveform(num_samples: int) -> np.ndarray:
    return np.random.default_rng(num_samples).uniform(-0.5, 0.5, num_samples).astype(np.float32)


def padded_logits(model, normalized: np.ndarray) -> torch.Tensor:
    """The reference: the clip zero-padded by hand to 400 samples, all of them real (one frame)."""
    padded = torch.zeros(1, 400)
    padded[0, : len(normalized)] = torch.from_numpy(normalized)
    with torch.no_grad():
        return model(padded).logits[0]


@pytest.mark.parametrize("case", SHORT)
def test_model_pads_a_short_input_to_one_frame(model_dir, case):
    _, model = model_dir
    x = waveform(SHORT[case])
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None])
        masked = model(torch.from_numpy(x)[None], attention_mask=torch.ones(1, len(x), dtype=torch.long))
    assert out.frame_mask.tolist() == [[True]]
    torch.testing.assert_close(out.logits[0], padded_logits(model, x))
    torch.testing.assert_close(masked.logits, out.logits)


def test_model_short_clip_in_a_padded_batch_gets_its_one_frame():
    """A 1-sample clip padded (mask 0) beside a 1000-sample clip: one valid frame, the same logits as alone (with a
    backbone that receives the attention mask; wav2vec2-base's group-norm stack sees the batch's padding)."""
    model = short_model(**layer_norm_overrides())
    long, short = waveform(1000), waveform(1)
    batch = torch.zeros(2, 1000)
    batch[0], batch[1, :1] = torch.from_numpy(long), torch.from_numpy(short)
    mask = torch.zeros(2, 1000, dtype=torch.long)
    mask[0], mask[1, :1] = 1, 1
    with torch.no_grad():
        out = model(batch, attention_mask=mask)
        alone = model(torch.from_numpy(long)[None])
    assert out.frame_mask.sum(-1).tolist() == [2, 1]  # (1000 − 400) // 320 + 1 = 2 frames; the short one: 1
    torch.testing.assert_close(out.logits[1], padded_logits(model, short))
    torch.testing.assert_close(out.logits[0], alone.logits[0])


def test_model_refuses_an_input_without_samples(model_dir):
    _, model = model_dir
    with pytest.raises(ValueError, match=r"input_values of shape \(1, 0\) has no samples"):
        model(torch.zeros(1, 0))


@pytest.mark.parametrize("case", SHORT)
def test_audio_classification_pipeline_on_a_short_array(model_dir, case):
    directory, model = model_dir
    x = waveform(SHORT[case])
    classifier = pipeline("audio-classification", model=str(directory), device="cpu")
    result = classifier({"raw": x, "sampling_rate": 16000}, top_k=None)
    normalized = make_feature_extractor()(x, sampling_rate=16000)["input_values"][0]
    expected = padded_logits(model, normalized).softmax(-1)
    assert sorted(r["label"] for r in result) == sorted(POLISH3_LABELS)
    for entry in result:
        assert entry["score"] == pytest.approx(expected[POLISH3_LABELS.index(entry["label"])].item(), abs=1e-5)


def test_trainer_trains_and_predicts_on_short_clips(model_dir, tmp_path):
    """The collator asked not to pad (`min_samples=1`): the batch reaches the model shorter than one frame."""
    directory, model = model_dir
    clips = [waveform(80), waveform(1), waveform(80), waveform(1)]
    dataset = Dataset.from_dict({"audio": [{"raw": c, "sampling_rate": 16000} for c in clips], "label": [0, 1, 2, 0]})
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        max_steps=1,
        report_to="none",
        remove_unused_columns=False,
        use_cpu=True,
        save_strategy="no",
    )
    trainer = FrameAlignedTrainer(
        model=Wav2Vec2ForFrameAlignedClassification.from_pretrained(directory),
        args=args,
        train_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor(), min_samples=1),
    )
    trainer.train()
    logits = trainer.predict(dataset).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    assert logits.shape == (4, 3) and np.isfinite(logits).all()
    assert np.isfinite(trainer.state.log_history[-1]["train_loss"])
