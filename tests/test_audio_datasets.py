"""`datasets` audio as users hold it (`Audio()` columns, decoders, embedded bytes) through the collator, the
length-grouped sampler and `FrameAlignedTrainer`, with torchcodec hidden.

torchcodec cannot load beside this machine's CPU torch, so the "with torchcodec" case is an object of
torchcodec's `AudioDecoder` shape (`get_all_samples()` → `.data` (C, N), `.sample_rate`) holding real audio.
"""

import math
import sys
from types import SimpleNamespace

import datasets.config
import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from datasets import Audio, Dataset
from helpers import polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling import audio as audio_module
from modeling.audio import input_duration, load_audio
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.data.audio_columns import audio_lengths, readable_audio
from modeling.prediction_fields import probabilities_of


class FakeAudioDecoder:
    """torchcodec's `AudioDecoder` interface over a real file (torchcodec itself cannot load here)."""

    def __init__(self, path):
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        self._samples = SimpleNamespace(data=torch.from_numpy(data.T.copy()), sample_rate=rate)
        self.metadata = SimpleNamespace(duration_seconds_from_header=len(data) / rate, path=str(path))

    def get_all_samples(self):
        return self._samples


@pytest.fixture
def no_torchcodec(monkeypatch):
    """torchcodec hidden from both datasets and modeling.audio."""
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    monkeypatch.setattr(datasets.config, "TORCHCODEC_AVAILABLE", False)
    audio_module.torchcodec_available.cache_clear()
    yield
    audio_module.torchcodec_available.cache_clear()


@pytest.fixture(scope="module")
def mixed_clips(tmp_path_factory):
    """6 real clips; every other one re-written as 44.1 kHz stereo FLAC (left = the clip, right = 0.5 × it)."""
    folder = tmp_path_factory.mktemp("mixed")
    clips = []
    for i, (path, label) in enumerate(polish3_clips(6)):
        if i % 2:
            mono, rate = sf.read(path, dtype="float32")
            upsampled = soxr.resample(mono, rate, 44_100, quality="HQ")
            path = str(folder / f"clip{i}_44k_stereo.flac")
            sf.write(path, np.stack([upsampled, 0.5 * upsampled], axis=1), 44_100)
        clips.append((path, label))
    return clips


def audio_dataset(clips):
    return Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]}).cast_column(
        "audio", Audio()
    )


def train_two_steps(tmp_path, train_dataset, **args):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config())
    settings = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=3,
        max_steps=2,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        logging_steps=1,
        train_sampling_strategy="group_by_length",  # no length_column_name: lengths from the audio headers
    )
    settings.update(args)
    trainer = FrameAlignedTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(**settings),
        train_dataset=train_dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor()),
    )
    trainer.train()
    return trainer


def test_audio_column_without_torchcodec_trains(tmp_path, mixed_clips, no_torchcodec):
    dataset = audio_dataset(mixed_clips)
    with pytest.raises(ImportError, match="torchcodec"):
        dataset[0]  # what datasets does on its own: the premise of the fix
    readable = readable_audio(dataset)
    assert readable[1]["audio"]["path"] == mixed_clips[1][0]
    # Lengths from the headers equal the files' frames / rate (the 44.1 kHz ones too).
    expected = [sf.info(path).frames / sf.info(path).samplerate for path, _ in mixed_clips]
    assert audio_lengths(dataset) == pytest.approx(expected, abs=1e-9)
    trainer = train_two_steps(tmp_path, dataset)  # remove_unused_columns=True (the default) keeps `audio`
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert trainer.state.global_step == 2


def test_44k_stereo_decodes_to_the_16k_mono_clip(mixed_clips):
    original, _ = polish3_clips(6)[1]
    reference = load_audio(original)
    converted = load_audio(mixed_clips[1][0])  # (L + 0.5 L) / 2 = 0.75 × the clip, back at 16 kHz
    n = min(len(reference), len(converted))
    assert abs(len(reference) - len(converted)) <= 1
    # 16-bit FLAC at 44.1 kHz and back: equal up to quantisation and the two resampling filters (< 2 % RMS).
    error = np.sqrt(np.mean((converted[:n] - 0.75 * reference[:n]) ** 2)) / np.sqrt(np.mean((0.75 * reference) ** 2))
    assert error < 0.02


def test_decoder_objects_and_dict_forms_give_the_same_waveform(mixed_clips):
    path = mixed_clips[1][0]
    expected = load_audio(path)
    with open(path, "rb") as f:
        embedded = {"path": None, "bytes": f.read()}
    data, rate = sf.read(path, dtype="float32")
    for source in (
        FakeAudioDecoder(path),
        {"array": FakeAudioDecoder(path)},
        embedded,
        {"array": data, "sampling_rate": rate},
        {"path": path, "bytes": None},
    ):
        np.testing.assert_allclose(load_audio(source), expected, atol=1e-6)
    assert input_duration(FakeAudioDecoder(path)) == pytest.approx(sf.info(path).duration)
    assert input_duration(embedded) == pytest.approx(sf.info(path).duration)


def test_decoder_rows_train_through_the_trainer(tmp_path, mixed_clips):
    """What a decoded `Audio()` column yields with torchcodec installed: rows holding `AudioDecoder`s."""
    rows = [{"audio": FakeAudioDecoder(path), "label": label} for path, label in mixed_clips]
    batch = AudioClassificationCollator(make_feature_extractor())(rows[:2])
    reference = AudioClassificationCollator(make_feature_extractor())(
        [{"audio": path, "label": label} for path, label in mixed_clips[:2]]
    )
    torch.testing.assert_close(batch["input_values"], reference["input_values"])
    trainer = train_two_steps(tmp_path, rows, remove_unused_columns=False)
    assert trainer.state.global_step == 2


@pytest.mark.parametrize("column", ["duration_s", "duration"])  # duration: users' (lhotse, SpeechBrain) name
def test_duration_column_is_used_when_present(mixed_clips, column):
    dataset = Dataset.from_dict({"audio": ["/nonexistent.wav"] * 2, column: [1.5, 2.5], "label": [0, 1]})
    assert audio_lengths(dataset) == [1.5, 2.5]  # no file is opened
    with pytest.raises(ValueError, match="row 0 of column 'audio'.*nonexistent.wav"):
        audio_lengths(dataset.remove_columns(column))
    for missing in (None, float("nan")):  # a missing value (NaN: pandas'): read from the header
        with pytest.raises(ValueError, match="row 1 of column 'audio'.*nonexistent.wav"):
            audio_lengths(Dataset.from_dict({"audio": ["/nonexistent.wav"] * 2, column: [1.5, missing]}))
    with pytest.raises(ValueError, match=f"row 1 of column '{column}': '1,5' is not a length in seconds"):
        audio_lengths(Dataset.from_dict({"audio": ["/nonexistent.wav"] * 2, column: ["2", "1,5"]}))


def test_timeline_pipeline_takes_decoders_and_embedded_bytes(tmp_path, mixed_clips):
    """The issue's "unsupported sample type object": decoded `Audio()` rows reach the pipeline as decoders."""
    from transformers import pipeline

    torch.manual_seed(0)
    Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(tmp_path / "model")
    make_feature_extractor().save_pretrained(tmp_path / "model")
    timeline = pipeline("frame-aligned-emotion", model=str(tmp_path / "model"), device="cpu")
    path = mixed_clips[1][0]
    with open(path, "rb") as f:
        embedded = {"path": None, "bytes": f.read()}
    expected = timeline(path)
    for source in (FakeAudioDecoder(path), embedded):
        result = timeline(source)
        assert result["predicted"] == expected["predicted"]
        assert probabilities_of(result) == pytest.approx(probabilities_of(expected), abs=1e-6)
