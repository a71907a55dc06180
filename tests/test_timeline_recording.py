"""modeling/timeline_recording.py + the pipeline's `segments=`: each segment's prediction equals the model run on
the cut segment alone (16 kHz and 8 kHz files, arrays, overlapping segments, segments longer than a window), the audio
is read segment by segment (a 10-hour file in bounded memory), past-the-end segments are clipped with a warning or
refused, and a constant model's timeline over identical-class clips has one class only."""

import csv
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import POLISH3, POLISH3_LABELS, layer_norm_overrides, tiny_config
from transformers import pipeline

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.prediction_fields import probabilities_of
from modeling.timeline_recording import SegmentError


SR = 16_000
WAV2VEC2_CONV = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))


def polish3_rows(label: str | None = None, count: int = 6) -> list[dict]:
    with open(POLISH3 / "metadata.csv") as f:
        rows = [row for row in csv.DictReader(f) if label is None or row["label"] == label]
    return rows[:count]


def save_model(directory, constant_class: int | None = None) -> Wav2Vec2ForFrameAlignedClassification:
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**WAV2VEC2_CONV, **layer_norm_overrides())).eval()
    with torch.no_grad():
        if constant_class is None:
            model.classifier.weight.mul_(20.0)  # confident, varied frames
        else:  # the same distribution for every frame and every input
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(constant_class), 3).float() * 3)
    model.save_pretrained(directory)
    make_feature_extractor().save_pretrained(directory)
    return model


@pytest.fixture(scope="module")
def emotion(tmp_path_factory):
    directory = tmp_path_factory.mktemp("segments_model")
    save_model(directory)
    return pipeline("frame-aligned-emotion", model=str(directory), device="cpu")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> tuple[str, np.ndarray]:
    """~7 s: six polish3 words with 0.3 s silences, written as a 16 kHz FLAC."""
    pieces = []
    for row in polish3_rows(count=6):
        pieces += [load_audio(POLISH3 / row["file"]), np.zeros(int(0.3 * SR), np.float32)]
    audio = np.concatenate(pieces)
    path = tmp_path_factory.mktemp("recording") / "call.flac"
    sf.write(path, audio, SR, subtype="PCM_16")
    return str(path), load_audio(path)


def assert_same_prediction(record: dict, alone: dict):
    assert record["predicted"] == alone["predicted"]
    np.testing.assert_allclose(
        list(probabilities_of(record).values()), list(probabilities_of(alone).values()), atol=1e-6
    )


SEGMENTS = [(0.0, 1.1, "A"), (0.9, 2.4, "B"), (3.05, 3.3, "A"), (2.0, 6.8, None)]  # overlapping, short, long


def test_each_segment_equals_the_model_on_the_cut_segment_alone(emotion, recording):
    path, audio = recording
    records = emotion(path, segments=SEGMENTS, window_length_s=2.0, window_overlap_s=0.5, batch_size=3)
    assert [(r["start_s"], r["end_s"], r["speaker"]) for r in records] == SEGMENTS
    for record, (start, end, _) in zip(records, SEGMENTS):
        cut = audio[int(start * SR) : int(end * SR)]
        alone = emotion(cut, window_length_s=2.0, window_overlap_s=0.5)
        assert_same_prediction(record, alone)
        assert record["duration_s"] == pytest.approx(len(cut) / SR, abs=1e-6)
        assert record["timeline"][0]["start_s"] == start  # recording seconds
        assert record["timeline"][-1]["end_s"] == pytest.approx(start + alone["timeline"][-1]["end_s"], abs=1e-6)
        assert [t["predicted"] for t in record["timeline"]] == [t["predicted"] for t in alone["timeline"]]
    assert len(records[3]["windows"]) > 1  # 4.8 s in 2 s windows
    # The same from an array, and from iter_segments one at a time.
    assert_same_prediction(emotion(audio, segments=SEGMENTS[:1])[0], records[0])
    streamed = list(emotion.iter_segments(path, SEGMENTS[2:3]))
    assert_same_prediction(streamed[0], records[2])


def test_an_8khz_file_is_cut_at_its_own_rate_then_resampled(emotion, recording, tmp_path):
    _, audio = recording
    low = load_audio(audio, SR, target_sampling_rate=8000)
    path = tmp_path / "call8k.wav"
    sf.write(path, low, 8000, subtype="FLOAT")
    record = emotion(str(path), segments=[(1.0, 2.5)])[0]
    alone = emotion(low[8000 : int(2.5 * 8000)], sampling_rate=8000)
    assert_same_prediction(record, alone)


def test_segments_past_the_end_are_clipped_with_a_warning_or_refused(emotion, recording, caplog):
    path, audio = recording
    end = len(audio) / SR
    with caplog.at_level("WARNING"):
        record = emotion(path, segments=[{"start_s": end - 1.0, "end_s": end + 5.0, "source": "turns.rttm:7"}])[0]
    assert "turns.rttm:7: ends at" in caplog.text and "clipped to the end" in caplog.text
    assert record["end_s"] == pytest.approx(end)
    with pytest.raises(SegmentError, match=r"segments\[1\]: starts at"):
        emotion(path, segments=[(0, 1), (end + 1, end + 2)])
    with pytest.raises(SegmentError, match=r"segments\[0\]: end 1.0 s is not after start 2.0 s"):
        emotion(path, segments=[(2, 1)])
    with pytest.raises(TypeError, match="one audio input"):
        emotion([path, path], segments=[(0, 1)])
    with caplog.at_level("WARNING"):
        assert emotion(path, segments=[]) == []
    assert "no segments" in caplog.text


def sparse_wav(path, seconds: int) -> None:
    """A 16 kHz PCM-16 WAV of `seconds` of silence that takes no disk space: the header, then a sparse hole."""
    data = seconds * SR * 2
    header = (
        b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
    )
    with open(path, "wb") as f:
        f.write(header + b"data" + struct.pack("<I", data))
    os.truncate(path, 44 + data)


def test_a_ten_hour_recording_is_read_segment_by_segment_in_bounded_memory(emotion, tmp_path):
    path = tmp_path / "ten_hours.wav"
    sparse_wav(path, 10 * 3600)  # 1.15 GB of samples on paper, none on disk: only the segments are decoded
    assert sf.info(path).duration == 36000.0
    tracemalloc.start()
    records = emotion(str(path), segments=[(60.0, 62.0, "A"), (35990.0, 35994.0, "B"), (35999.0, 36003.0, "A")])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [(r["start_s"], r["end_s"]) for r in records] == [(60.0, 62.0), (35990.0, 35994.0), (35999.0, 36000.0)]
    assert peak < 20 * 2**20  # the whole file would be 2.3 GB as float32; 4 s of it is 256 KB


def test_a_constant_model_gives_one_class_over_identical_class_clips(tmp_path):
    directory = tmp_path / "constant"
    save_model(directory, constant_class=1)
    emotion = pipeline("frame-aligned-emotion", model=str(directory), device="cpu")
    clips = [load_audio(POLISH3 / row["file"]) for row in polish3_rows("fear", count=12)]  # ~10 s of fear
    audio = np.concatenate(clips)
    for smoothing in ("median", "mean", "none"):
        result = emotion(audio, window_length_s=4.0, window_overlap_s=1.0, smoothing=smoothing, min_segment_s=0.5)
        assert [(t["start_s"], t["predicted"]) for t in result["timeline"]] == [(0.0, POLISH3_LABELS[1])]
        assert result["timeline"][-1]["end_s"] == pytest.approx(len(audio) / SR)
        assert result["predicted"] == POLISH3_LABELS[1]


def test_cli_segments_outputs_lanes_and_a_corrupt_file_in_between(emotion, recording, tmp_path, capsys):
    import matplotlib.image

    from modeling.cli.timeline import main

    path, audio = recording
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "call.rttm").write_text(
        "SPEAKER call 1 0.0 1.1 <NA> <NA> A <NA> <NA>\nSPEAKER call 1 0.9 1.5 <NA> <NA> B <NA> <NA>\n"
        "SPEAKER call 1 2.6 2.0 <NA> <NA> A <NA> <NA>\nSPEAKER call 1 4.0 2.8 <NA> <NA> B <NA> <NA>\n"
    )
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEnot audio")
    (folder / "corrupt.rttm").write_text("SPEAKER corrupt 1 0.0 1.0 <NA> <NA> A <NA> <NA>\n")
    model = emotion.model.name_or_path
    argv = [path, str(corrupt), "--model", model, "--segments", str(folder), "--out", str(tmp_path / "o.csv")]
    argv += ["--out", str(tmp_path / "o.srt"), "--lanes", str(tmp_path / "lanes.png")]
    assert main(argv) == 2  # the corrupt file is reported; the recording before it is done
    captured = capsys.readouterr()
    assert "corrupt.wav" in captured.err and "call.flac  (" in captured.out and "4 segments" in captured.out
    rows = (tmp_path / "o-0-call.csv").read_text().splitlines()
    expected = emotion(path, segments=[(0.0, 1.1, "A"), (0.9, 2.4, "B"), (2.6, 4.6, "A"), (4.0, 6.8, "B")])
    assert [row.split(",")[:4] for row in rows[1:]] == [
        [f"{r['start_s']:.3f}", f"{r['end_s']:.3f}", r["speaker"], r["predicted"]] for r in expected
    ]  # times to the millisecond (segments.writers.format_seconds)
    assert "00:00:02,600 --> 00:00:04,600" in (tmp_path / "o-0-call.srt").read_text()
    image = matplotlib.image.imread(tmp_path / "lanes-0-call.png")
    assert image.shape[1] > 1000 and image[..., :3].std() > 0.05  # a drawn figure
    assert not (tmp_path / "o-1-corrupt.csv").exists()
    # Whole-file mode goes on after a corrupt file too.
    assert main([str(corrupt), path, "--model", model, "--json", str(tmp_path / "t.json")]) == 2
    assert [r["audio"] for r in json.loads((tmp_path / "t.json").read_text())] == [path]


def test_deprecated_chunk_names_still_work_with_a_warning(emotion, recording):
    _, audio = recording
    expected = emotion(audio, window_length_s=2.0, window_overlap_s=0.5)
    with pytest.warns(
        FutureWarning, match="`chunk_length_s` is deprecated and will be removed: use `window_length_s`"
    ):
        old = emotion(audio, chunk_length_s=2.0, chunk_overlap_s=0.5)
    assert old["windows"] == expected["windows"] and len(old["windows"]) > 1
    with pytest.raises(TypeError, match="give only `window_length_s`"):
        emotion(audio, chunk_length_s=2.0, window_length_s=2.0)


def test_the_lanes_figure_says_how_many_segment_labels_it_left_out(tmp_path):
    """A segment too narrow for its label is drawn without it; the fresh-user try read the unlabelled figure as
    missing labels: the title says how many were left out."""
    from modeling.cli.timeline_plot import plot_lanes

    def record(start_s, end_s, predicted):
        probabilities = {"prob_anger": 0.7 if predicted == "anger" else 0.3}
        probabilities["prob_neutral"] = 1 - probabilities["prob_anger"]
        part = {"start_s": start_s, "end_s": end_s, "predicted": predicted, **probabilities}
        return {"start_s": start_s, "end_s": end_s, "speaker": "A", "predicted": predicted, **probabilities,
                "timeline": [part]}  # fmt: skip

    records = [record(0.0, 30.0, "anger"), record(30.0, 30.5, "neutral"), record(31.0, 31.4, "anger")]
    figure = plot_lanes(records, ["anger", "neutral"], str(tmp_path / "lanes.png"), 60.0)
    title = figure.axes[0].get_title(loc="left")
    assert "3 segments" in title and "(2 segment labels too narrow to print" in title
