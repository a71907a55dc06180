"""predict.py's long-recording mode (modeling/inference/recordings.py): a folder of recordings with their segment
files (RTTM, SRT) or the VAD, one row per segment equal to the pipeline's, bad files and silent files listed with the
reason while the others go on, and an interrupted job resumed with every segment written exactly once."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import layer_norm_overrides, polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.cli.predict import main
from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline
from modeling.inference.batch import collect_inputs, predict_files
from modeling.inference.recordings import NO_SPEECH, SegmentSource
from modeling.rundir import faults
from modeling.segments import read_segments


SR = 16_000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**layer_norm_overrides())).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """call.flac + call.rttm (two speakers, overlapping), talk.wav + talk.srt, words.flac (VAD), silence.wav,
    corrupt.wav."""
    folder = tmp_path_factory.mktemp("recordings")
    gap = np.zeros(SR, np.float32)
    clips = [load_audio(path) for path, _ in polish3_clips(4)]
    audio = np.concatenate([gap, clips[0], gap, clips[1], gap, clips[2], gap, clips[3], gap])
    sf.write(folder / "call.flac", audio, SR)
    (folder / "call.rttm").write_text(
        "SPEAKER call 1 0.9 1.2 <NA> <NA> A <NA> <NA>\nSPEAKER call 1 1.8 2.0 <NA> <NA> B <NA> <NA>\n"
        "SPEAKER call 1 5.0 2.5 <NA> <NA> A <NA> <NA>\n"
    )
    sf.write(folder / "talk.wav", audio[: 4 * SR], SR)
    (folder / "talk.srt").write_text(
        "1\n00:00:00,500 --> 00:00:02,250\n[X]: hi\n\n2\n00:00:02,500 --> 00:00:03,900\ny\n"
    )
    sf.write(folder / "words.flac", audio, SR)
    sf.write(folder / "silence.wav", np.zeros(2 * SR, np.float32), SR)
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00not audio at all")
    return folder


def rows_of(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_folder_of_recordings_segment_by_segment(tmp_path, checkpoint, recordings, capsys):
    output = tmp_path / "segments.csv"
    argv = [str(recordings), "--model", str(checkpoint), "--output", str(output), "--segments", "auto", "--vad"]
    # 2: files failed (silence.wav has no speech, corrupt.wav no audio; listed below), the others are done
    assert main([*argv, "--timeline", str(tmp_path / "segments.jsonl"), "--no-progress"]) == 2
    rows = rows_of(output)
    assert list(rows[0]) == [
        "file",
        "start_s",
        "end_s",
        "speaker",
        "predicted",
        "prob_anger",
        "prob_fear",
        "prob_neutral",
    ]
    by_file = {}
    for row in rows:
        by_file.setdefault(row["file"].rsplit("/", 1)[-1], []).append(row)
    assert [(r["start_s"], r["end_s"], r["speaker"]) for r in by_file["call.flac"]] == [
        ("0.900", "2.100", "A"),
        ("1.800", "3.800", "B"),
        ("5.000", "7.500", "A"),
    ]
    assert [(r["start_s"], r["speaker"]) for r in by_file["talk.wav"]] == [("0.500", "X"), ("2.500", "")]
    assert len(by_file["words.flac"]) == 4  # the VAD: one region per word
    pipe = load_pipeline(checkpoint)
    expected = pipe(str(recordings / "call.flac"), segments=read_segments(recordings / "call.rttm", "call"))
    for row, record in zip(by_file["call.flac"], expected):
        assert row["predicted"] == record["predicted"]
        assert float(row["prob_fear"]) == pytest.approx(record["prob_fear"], abs=1e-6)
    errors = {row["file"].rsplit("/", 1)[-1]: row["error"] for row in rows_of(tmp_path / "segments.errors.csv")}
    assert errors["silence.wav"] == NO_SPEECH and "corrupt.wav" in errors and len(errors) == 2
    lines = [json.loads(line) for line in (tmp_path / "segments.jsonl").read_text().splitlines()]
    call = next(line for line in lines if line["file"].endswith("call.flac"))
    assert [s["start_s"] for s in call["segments"]] == [0.9, 1.8, 5.0] and call["segments"][0]["timeline"]
    # Without --vad, a recording without a segment file is an error naming what was looked for.
    argv = [str(recordings / "words.flac"), "--model", str(checkpoint), "--output", str(tmp_path / "x.csv")]
    assert main([*argv, "--segments", "auto", "--no-progress"]) == 2  # its one file failed
    assert "no segment file words.{rttm/srt/vtt/csv/json/jsonl}" in rows_of(tmp_path / "x.errors.csv")[0]["error"]


def test_an_interrupted_job_resumes_with_every_segment_once(tmp_path, checkpoint, recordings, monkeypatch):
    pipe, paths = load_pipeline(checkpoint), collect_inputs([str(recordings)])
    source = SegmentSource("auto", vad=True)
    output = tmp_path / "resumed.csv"
    monkeypatch.setenv(faults.FAULT_ENV, "predict:partial-write:predictions:raise@2")
    monkeypatch.setattr(faults, "_fault_hits", {})
    with pytest.raises(faults.FaultInjected):
        predict_files(pipe, paths, output, segments=source, files_per_write=1)
    assert not output.read_bytes().endswith(b"\n")  # half a row of the second recording
    monkeypatch.delenv(faults.FAULT_ENV)
    summary = predict_files(pipe, paths, output, segments=source, files_per_write=1)
    assert summary.skipped == 2  # the error listed first and the first recording; the interrupted one is redone
    reference = tmp_path / "reference.csv"
    predict_files(pipe, paths, reference, segments=source)
    assert sorted(map(tuple, (r.values() for r in rows_of(output)))) == sorted(
        map(tuple, (r.values() for r in rows_of(reference)))
    )


def test_speed_is_worded_one_way():
    """predict.py's summary says which way the ratio goes ("2.7× real time" was read both ways)."""
    from modeling.inference.batch import BatchSummary, speed_sentence

    summary = BatchSummary(5, skipped=1, predicted=4, failed=0, audio_seconds=60.0, wall_seconds=22.2, repaired=[])
    assert summary.describe() == (
        "4 file(s) predicted: processed 60.0 s of audio in 22.2 s (2.7× faster than real time); "
        "0 failed, 1 already done, 5 in all"
    )
    assert speed_sentence(10.0, 20.0) == "processed 10.0 s of audio in 20.0 s (2.0× slower than real time)"
    assert speed_sentence(9000.0, 900.0) == "processed 2.50 h of audio in 15.0 min (10.0× faster than real time)"
    assert speed_sentence(0.0, 0.5) == "processed 0.0 s of audio in 0.5 s"  # nothing predicted: no ratio
