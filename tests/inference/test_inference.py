"""CPU inference at scale (`modeling/inference/`, `predict.py`): ONNX export equals PyTorch, the ONNX Runtime backend
of
the pipeline, the batch job over a folder with bad files, and kill -9 + resume → every file exactly once."""

import csv
import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers import POLISH3, REPO, layer_norm_overrides, polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.prediction_fields import probabilities_of
from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV


ort = pytest.importorskip("onnxruntime")

from modeling.inference import load_pipeline  # noqa: E402  (needs onnxruntime)
from modeling.inference.batch import collect_inputs, predict_files  # noqa: E402
from modeling.inference.onnx_backend import OnnxFrameAlignedModel, ensure_onnx  # noqa: E402
from modeling.inference.onnx_export import export_onnx, onnx_path  # noqa: E402


def save_checkpoint(folder, **overrides):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**overrides)).eval()
    model.save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(folder)
    return folder


def padded_batch(waveforms):
    length = max(len(w) for w in waveforms)
    values = np.zeros((len(waveforms), length), np.float32)
    mask = np.zeros((len(waveforms), length), np.int64)
    for row, waveform in enumerate(waveforms):
        values[row, : len(waveform)] = waveform
        mask[row, : len(waveform)] = 1
    return torch.from_numpy(values), torch.from_numpy(mask)


@pytest.mark.parametrize(
    "overrides", [{}, layer_norm_overrides(), {"pooling": "attentive"}], ids=["group-norm", "layer-norm", "stage1"]
)
def test_onnx_outputs_equal_pytorch_batched_and_one_by_one(tmp_path, overrides):
    model = save_checkpoint(tmp_path, **overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exported = export_onnx(tmp_path)
    # the tracer's and exporter's expected notes are silenced (they flooded app.py's start-up), nothing else
    assert [
        str(w.message)[:80] for w in caught if issubclass(w.category, (torch.jit.TracerWarning, UserWarning))
    ] == []
    assert exported == tmp_path / "onnx" / "model.onnx"
    onnx_model = OnnxFrameAlignedModel(exported, model.config)
    waveforms = [load_audio(path) for path, _ in polish3_clips(4)]  # real clips, 0.6–2.5 s: different lengths
    assert len({len(w) for w in waveforms}) == 4
    batches = [[w] for w in waveforms] + [waveforms]  # one by one, then all four in one padded batch
    for batch in batches:
        values, mask = padded_batch(batch)
        with torch.no_grad():
            expected = model(values, attention_mask=mask)
        got = onnx_model(values, attention_mask=mask)
        assert torch.equal(got.frame_mask, expected.frame_mask)
        valid = expected.frame_mask
        assert got.logits.shape == expected.logits.shape == (len(batch), 3)
        assert torch.allclose(got.logits, expected.logits, atol=1e-4, rtol=0)
        assert torch.allclose(got.frame_logits[valid], expected.frame_logits[valid], atol=1e-4, rtol=0)
        assert torch.allclose(got.frame_weights, expected.frame_weights, atol=1e-4, rtol=0)
        assert torch.allclose(got.frame_weights.sum(-1), torch.ones(len(batch)), atol=1e-5)


def test_a_checkpoint_replaced_at_the_same_path_is_exported_again(tmp_path):
    """Its old ONNX files ran with no error (a fresh-user helper found it): onnx/source.json records the weights
    exported; other weights at the same path are exported (and quantised) again, the stale files removed."""
    folder = tmp_path / "best"

    def save(seed):
        torch.manual_seed(seed)
        Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(folder)
        make_feature_extractor().save_pretrained(folder)

    save(1)
    clip = polish3_clips(1)[0][0]
    old = probabilities_of(load_pipeline(folder, backend="onnx-int8")(clip))
    assert (folder / "onnx" / "source.json").is_file() and onnx_path(folder, int8=True).is_file()
    save(2)  # retrained: other weights, same path
    for backend in ("onnx", "onnx-int8"):
        new = probabilities_of(load_pipeline(folder, backend=backend)(clip))
        tolerance = 2e-2 if "int8" in backend else 1e-5
        assert new == pytest.approx(probabilities_of(load_pipeline(folder)(clip)), abs=tolerance)
        assert new != pytest.approx(old, abs=1e-3)
    # a folder without weights (ONNX files as downloaded from the Hub) keeps its files
    (folder / "model.safetensors").unlink()
    exported = onnx_path(folder).stat().st_mtime_ns
    assert ensure_onnx(folder) == onnx_path(folder) and onnx_path(folder).stat().st_mtime_ns == exported


def test_pipeline_backends_give_the_same_results(checkpoint):
    clips = [path for path, _ in polish3_clips(3)]
    results = {backend: load_pipeline(checkpoint, backend=backend)(clips) for backend in ("torch", "onnx")}
    assert onnx_path(checkpoint).is_file()
    for torch_result, onnx_result in zip(results["torch"], results["onnx"]):
        assert torch_result["predicted"] == onnx_result["predicted"]
        assert probabilities_of(torch_result) == pytest.approx(probabilities_of(onnx_result), abs=1e-5)
        assert [s["predicted"] for s in torch_result["timeline"]] == [s["predicted"] for s in onnx_result["timeline"]]
    # transformers' own audio-classification pipeline runs the ONNX model too, with the PyTorch model's scores, and
    # without logging "The model 'OnnxFrameAlignedModel' is not supported for audio-classification"
    import logging

    from transformers import pipeline

    onnx_timeline = load_pipeline(checkpoint, backend="onnx")
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    transformers_logger = logging.getLogger("transformers")  # the library's root: propagation to root is off
    transformers_logger.addHandler(handler)
    try:
        classify = pipeline(
            "audio-classification", model=onnx_timeline.model, feature_extractor=onnx_timeline.feature_extractor
        )
        torch_classify = pipeline(
            "audio-classification", model=load_pipeline(checkpoint).model, feature_extractor=make_feature_extractor()
        )
    finally:
        transformers_logger.removeHandler(handler)
    assert [r.getMessage()[:80] for r in records if r.levelno >= logging.WARNING] == []
    waveform = {"raw": load_audio(clips[0]), "sampling_rate": 16000}
    got = {s["label"]: s["score"] for s in classify(waveform, top_k=None)}
    expected = {s["label"]: s["score"] for s in torch_classify(waveform, top_k=None)}
    assert set(got) == set(expected) == {"anger", "fear", "neutral"}
    assert got == pytest.approx(expected, abs=1e-4)
    assert got == pytest.approx(probabilities_of(results["torch"][0]), abs=1e-5)
    int8 = load_pipeline(checkpoint, backend="onnx-int8")
    assert onnx_path(checkpoint, int8=True).is_file()
    assert int8.model.path.name == "model_int8.onnx"
    assert onnx_path(checkpoint, int8=True).stat().st_size < onnx_path(checkpoint).stat().st_size
    with pytest.raises(ValueError, match="backend 'tensorrt'"):
        load_pipeline(checkpoint, backend="tensorrt")


# ----------------------------------------------------------------------------------------------------------------
# The batch job
# ----------------------------------------------------------------------------------------------------------------


def awkward_folder(folder):
    """Three real clips, the first again as 48 kHz stereo, a 0.1 s clip, a corrupt file (no audio header) and a
    truncated FLAC (its header reads, its body fails to decode: the group it is in is retried file by file)."""
    folder.mkdir()
    (folder / "sub").mkdir()
    clips = [path for path, _ in polish3_clips(3)]
    for path in clips:
        (folder / os.path.basename(path)).write_bytes(open(path, "rb").read())
    mono = load_audio(clips[0])
    stereo = soxr.resample(mono, 16_000, 48_000)
    sf.write(folder / "sub" / "stereo48k.wav", np.stack([stereo, 0.5 * stereo], axis=1), 48_000)
    sf.write(folder / "short.wav", mono[:1600], 16_000)  # 0.1 s
    (folder / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 8)
    flac = (POLISH3 / "audio" / "m2.s_stop_1.flac").read_bytes()
    (folder / "truncated.flac").write_bytes(flac[: len(flac) // 2])
    return clips


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_batch_job_lists_the_bad_file_and_predicts_the_others(tmp_path, checkpoint):
    folder = tmp_path / "audio"
    clips = awkward_folder(folder)
    pipe = load_pipeline(checkpoint)
    paths = collect_inputs([str(folder)])
    assert len(paths) == 7
    output = tmp_path / "out" / "predictions.csv"
    summary = predict_files(pipe, paths, output, timeline_path=tmp_path / "out" / "timeline.jsonl", files_per_write=2)
    assert (summary.predicted, summary.failed, summary.skipped) == (5, 2, 0)
    rows = {os.path.relpath(row["file"], folder): row for row in read_csv(output)}
    names = sorted(os.path.basename(path) for path in clips)
    assert sorted(rows) == sorted(names + ["short.wav", "sub/stereo48k.wav"])
    assert list(read_csv(output)[0]) == [
        "file",
        "duration_s",
        "predicted",
        "prob_anger",
        "prob_fear",
        "prob_neutral",
    ]
    errors = {
        os.path.basename(row["file"]): row["error"] for row in read_csv(tmp_path / "out" / "predictions.errors.csv")
    }
    assert sorted(errors) == ["corrupt.wav", "truncated.flac"]
    assert errors["corrupt.wav"].startswith("cannot decode audio (Error opening")
    assert errors["truncated.flac"] == "cannot decode audio (Error : flac decoder lost sync.)."
    # Values: durations from the audio itself, probabilities = the pipeline on the same file, rows sorted longest
    # first.
    assert float(rows["short.wav"]["duration_s"]) == 0.1
    first = rows[os.path.basename(clips[0])]
    assert rows["sub/stereo48k.wav"]["duration_s"] == first["duration_s"] == f"{len(load_audio(clips[0])) / 16000:.3f}"
    for name in names:
        expected = pipe(str(folder / name))
        row = rows[name]
        assert row["predicted"] == expected["predicted"]
        for label, probability in probabilities_of(expected).items():
            assert float(row[f"prob_{label}"]) == pytest.approx(probability, abs=1e-6)
        assert sum(float(row[f"prob_{label}"]) for label in ("anger", "fear", "neutral")) == pytest.approx(1, abs=1e-5)
    durations = [float(row["duration_s"]) for row in read_csv(output)]
    assert durations == sorted(durations, reverse=True)
    timeline = [json.loads(line) for line in (tmp_path / "out" / "timeline.jsonl").read_text().splitlines()]
    assert sorted(record["file"] for record in timeline) == sorted(row["file"] for row in read_csv(output))
    assert all(record["timeline"][-1]["end_s"] == pytest.approx(record["duration_s"]) for record in timeline)
    # A re-run skips everything: nothing is predicted twice.
    again = predict_files(pipe, paths, output, files_per_write=2)
    assert (again.predicted, again.failed, again.skipped) == (0, 0, 7)
    assert len(read_csv(output)) == 5


@pytest.mark.bad_input
def test_batch_job_refuses_window_settings_before_any_file_is_read(tmp_path, checkpoint):
    """`predict_files(..., pipeline_kwargs={"window_length_s": 2})` (the default 4 s overlap) failed every file
    longer than 2 s into the errors CSV, one row each; the library call now refuses the settings at once, as the
    CLIs do, and writes nothing. The pipeline's own rule decides (`window_and_step`)."""
    pipe = load_pipeline(checkpoint)
    output = tmp_path / "out" / "predictions.csv"
    paths = [str(path) for path, _ in polish3_clips(2)]
    with pytest.raises(ValueError, match=r"window_length_s=2 must be longer than window_overlap_s=4"):
        predict_files(pipe, paths, output, pipeline_kwargs={"window_length_s": 2})
    assert not output.parent.exists()
    assert pipe.window_and_step(2, 0.5) == (32000, 24000)  # 1.5 s steps on the 320-sample frame grid
    summary = predict_files(pipe, paths, output, pipeline_kwargs={"window_length_s": 2, "window_overlap_s": 0.5})
    assert (summary.predicted, summary.failed) == (2, 0)


def test_collect_inputs_reads_csv_globs_and_reports_empty_sources(tmp_path):
    (tmp_path / "list.csv").write_text("file,label\naudio/a.wav,x\nb.flac,y\naudio/a.wav,x\n")
    assert collect_inputs([str(tmp_path / "list.csv")]) == [
        str(tmp_path / "audio" / "a.wav"),
        str(tmp_path / "b.flac"),
    ]
    with pytest.raises(ValueError, match=r"nothing\*\.wav: matches no audio file"):
        collect_inputs([str(tmp_path / "nothing*.wav")])
    (tmp_path / "bad.csv").write_text("name\nx.wav\n")
    with pytest.raises(ValueError, match=r"bad.csv: row 1: no column file / file_name / path / audio"):
        collect_inputs([str(tmp_path / "bad.csv")])


def predict_command(folder, checkpoint, output):
    return [
        sys.executable,
        "predict.py",
        str(folder),
        "--model",
        str(checkpoint),
        "--output",
        str(output),
        "--timeline",
        str(output.with_suffix(".jsonl")),
        "--files-per-write",
        "2",
        "--no-progress",
    ]


def run_killed(command, point, hit, log):
    env = {**os.environ, FAULT_ENV: f"{point}:kill@{hit}", FAULT_LOG_ENV: str(log)}
    process = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert f"fault point {point}: kill (hit {hit}" in log.read_text()


@pytest.mark.skipif(POLISH3 is None, reason="needs the bundled clips")
def test_kill_9_mid_job_then_rerun_writes_every_file_exactly_once(tmp_path, checkpoint):
    folder = tmp_path / "audio"
    awkward_folder(folder)
    output = tmp_path / "predictions.csv"
    command = predict_command(folder, checkpoint, output)
    # 1. killed halfway through the second group's rows: a partial last line
    run_killed(command, "predict:partial-write:predictions", 2, tmp_path / "faults.log")  # the second group
    assert not output.read_bytes().endswith(b"\n")
    # the first group's 2 rows, then half of the second group's one row (its other file is the truncated FLAC)
    assert len(read_csv(output)) == 3 and output.read_bytes().count(b"\n") == 3
    # 2. killed after the next group's timeline lines, before its rows
    run_killed(command, "predict:before-rows", 1, tmp_path / "faults.log")
    # 3. to the end
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert process.returncode == 0, process.stderr[-2000:]
    rows = read_csv(output)
    files = [row["file"] for row in rows]
    assert len(files) == len(set(files)) == 5
    assert all(row["predicted"] in ("anger", "fear", "neutral") and len(row) == 6 for row in rows)
    timeline_files = [json.loads(line)["file"] for line in output.with_suffix(".jsonl").read_text().splitlines()]
    assert sorted(timeline_files) == sorted(files)
    errors = read_csv(output.with_name("predictions.errors.csv"))
    assert sorted(os.path.basename(row["file"]) for row in errors) == ["corrupt.wav", "truncated.flac"]
    # The rows equal an uninterrupted run's.
    reference = tmp_path / "reference.csv"
    predict_files(load_pipeline(checkpoint), collect_inputs([str(folder)]), reference, files_per_write=2)
    assert sorted(map(tuple, (r.values() for r in rows))) == sorted(
        map(tuple, (r.values() for r in read_csv(reference)))
    )


def test_push_to_hub_uploads_the_onnx_export_next_to_the_weights(tmp_path, hub):
    from huggingface_hub import HfApi
    from runs import write_run

    from modeling.publishing.hub import push_run

    run = write_run(tmp_path / "run")
    best = run / "fold1" / "stage2" / "best"
    exported = export_onnx(best)
    results = push_run(run, "org/ser", folds=[1], api=HfApi(endpoint=hub.url, token="dummy"))
    assert "onnx/model.onnx" in results[0].uploaded and "model.safetensors" in results[0].uploaded
    assert hub.read("org/ser-fold1", "onnx/model.onnx") == exported.read_bytes()


def readme_commands(section: str) -> list[str]:
    text = (REPO / "docs" / "inference.md").read_text()
    body = text[text.index(section) :]
    block = body[body.index("```bash\n") + 8 : body.index("```", body.index("```bash\n") + 8)]
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.startswith("python predict.py")]


def test_readme_batch_commands_run_as_written(tmp_path, checkpoint, monkeypatch, capsys):
    """docs/inference.md's commands, in a folder holding runs/demo/fold1/stage2/best (the tiny checkpoint) and a small
    data/polish3 (4 real clips with their metadata.csv)."""
    import shlex
    import shutil

    from modeling.cli.predict import main

    commands = readme_commands("## Batch prediction over many files")
    assert len(commands) == 5
    shutil.copytree(checkpoint, tmp_path / "runs/demo/fold1/stage2/best", ignore=shutil.ignore_patterns("onnx"))
    audio = tmp_path / "data/polish3/audio"
    audio.mkdir(parents=True)
    names = ["m1.a_nie_1.flac", "m1.n_nie_1.flac", "m2.s_stop_1.flac", "m3.a_nie_2.flac"]
    for name in names:
        shutil.copy(POLISH3 / "audio" / name, audio / name)
    (tmp_path / "data/polish3/metadata.csv").write_text("file,label\n" + "".join(f"audio/{n},x\n" for n in names))
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        assert argv[:2] == ["python", "predict.py"]
        assert main(argv[2:]) == 0, command
    printed = capsys.readouterr().out
    assert "0 file(s) predicted" in printed and "4 already done" in printed  # the second command resumed
    assert len(read_csv("runs/predictions.csv")) == 4 and len(read_csv("runs/all.csv")) == 4
    assert sorted(os.path.basename(row["file"]) for row in read_csv("runs/m1.csv")) == names[:2]
    assert len((tmp_path / "runs/m1.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "runs/demo/fold1/stage2/best/onnx/model_int8.onnx").is_file()
    # and the section's Python snippet
    text = (REPO / "docs" / "inference.md").read_text()
    section = text[text.index("## Batch prediction over many files") :]
    snippet = section[section.index("```python\n") + 10 : section.index("```", section.index("```python\n") + 10)]
    namespace = {}
    exec(snippet, namespace)
    assert namespace["timeline"].model.path.name == "model.onnx"


def test_int8_agreement_of_a_run_against_labels_computed_directly(tmp_path, checkpoint):
    import shutil

    from modeling.inference.agreement import run_int8_agreement

    best = tmp_path / "run" / "fold2" / "stage2" / "best"
    shutil.copytree(checkpoint, best, ignore=shutil.ignore_patterns("onnx"))
    clips = [path for path, _ in polish3_clips(6)]
    report = run_int8_agreement(tmp_path / "run", clips)
    assert list(report["folds"]) == ["fold2/stage2"] and report["folds"]["fold2/stage2"]["clips"] == 6
    fp32 = [r["predicted"] for r in load_pipeline(best, backend="onnx")(clips)]
    int8 = [r["predicted"] for r in load_pipeline(best, backend="onnx-int8")(clips)]
    expected = [(path, a, b) for path, a, b in zip(clips, fp32, int8) if a != b]
    assert report["folds"]["fold2/stage2"]["disagreements"] == expected
    assert report["agreement"] == pytest.approx(1 - len(expected) / 6)
    assert run_int8_agreement(tmp_path / "empty", clips) is None


def test_outputs_of_another_label_set_are_refused_and_a_partial_line_is_cut(tmp_path):
    from modeling.inference.batch import BatchJobError, JobOutputs
    from modeling.inference.output_files import repair_partial_line

    output = tmp_path / "p.csv"
    output.write_text("file,duration_s,label,score,prob_happy,prob_sad\na.wav,1.000,sad,0.600000,0.400000,0.600000\n")
    with pytest.raises(
        BatchJobError, match=r"p.csv: existing columns .*prob_happy.* differ from this job's .*prob_anger"
    ):
        JobOutputs.open(output, ["anger", "fear", "neutral"])
    output.write_bytes(b"file,error\na.wav,x\nb.wav,cannot dec")
    assert repair_partial_line(output) and output.read_bytes() == b"file,error\na.wav,x\n"
    assert not repair_partial_line(output)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_export_model_leaves_the_callers_model_as_it_was(tmp_path, mode):
    """Issue 19: `export_model(model, path)` left a model in training mode (the exporter restores the wrapper's mode,
    which starts in training mode): dropout stayed on and the caller's logits changed silently. Its mode (every
    submodule's) and its dtype are as before, and its outputs do not change."""
    from modeling.inference.onnx_export import export_model

    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(final_dropout=0.5, hidden_dropout=0.3))
    model.train(mode == "train")
    model.pooler.eval()  # a mixed state: one submodule in another mode than its parent
    modes = {name: module.training for name, module in model.named_modules()}
    model = model.to(torch.bfloat16)
    export_model(model, tmp_path / "model.onnx")
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    if mode == "eval":
        waveform = torch.from_numpy(load_audio(polish3_clips(1)[0][0])[None, :16000]).to(torch.bfloat16)
        with torch.no_grad():
            first, second = model(waveform).logits, model(waveform).logits
        assert torch.equal(first, second)


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_predict_reads_every_metadata_csv_train_py_reads(tmp_path, delimiter):
    """Issue 19: predict.py refused what train.py accepts: Excel's byte-order mark, `;`/tab/`|` delimiters, CRLF, the
    `file_name` column of 🤗 audiofolder. Both read CSVs through one reader, so the same file gives the same files."""
    from modeling.data.audio_folder import load_audio_folder

    rows = polish3_clips(3)
    lines = [delimiter.join(["file_name", "label", "speaker"])]
    lines += [delimiter.join([f"../clips/{i}.flac", "anger", "s1"]) for i in range(len(rows))]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "clips").mkdir()
    for i, (path, _) in enumerate(rows):
        (tmp_path / "clips" / f"{i}.flac").write_bytes(open(path, "rb").read())
    csv_path = tmp_path / "corpus" / "metadata.csv"
    csv_path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    expected = [str((tmp_path / "clips" / f"{i}.flac").resolve()) for i in range(len(rows))]
    assert [str(Path(p).resolve()) for p in collect_inputs([str(csv_path)])] == expected
    assert list(load_audio_folder(tmp_path / "corpus")["audio"]) == expected
    csv_path.write_bytes(b"\xef\xbb\xbfname;label\r\nx.wav;a\r\n")
    with pytest.raises(ValueError, match=r"metadata.csv: row 1: no column file / file_name / path / audio"):
        collect_inputs([str(csv_path)])


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--export-onnx", "--model", "m", "a.wav"], "takes no inputs, --output or --timeline"),
        (["a.wav", "--model", "m", "--output", "o.csv", "--path-column", "x"], "applies to CSV inputs only"),
    ],
)
def test_predict_options_that_would_be_ignored_are_refused(argv, message, capsys):
    from modeling.cli.predict import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
