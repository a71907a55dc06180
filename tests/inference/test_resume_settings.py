"""A resumed predict.py job must be the same job: an output written with fold1's model, then the same --output with
fold3's, printed "0 file(s) predicted ... 450 already done" and exit 0 (fold1's rows presented as fold3's); an
interrupted CSV + another --model mixed two models' rows. The settings that decide the rows are recorded in
`<output stem>.job.json` (`modeling/inference/job_record.py`); a re-run with others is refused (exit 2, nothing
written, each setting named old → new), one with only other batch size/threads/progress resumes, and an output
written before the record existed resumes with a warning."""

import hashlib
import json
import shutil

import pytest
import torch
from helpers import POLISH3, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor


pytest.importorskip("onnxruntime")

CLIPS = ["m1.a_nie_1.flac", "m1.n_nie_1.flac"]
OUTPUTS = ("p.csv", "p.errors.csv", "p.job.json")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """Two tiny checkpoints (fold1, fold3: other random weights; calibration temperature 1.5), two real clips and a
    corrupt file, and the outputs of `predict.py audio --model fold1 --output p.csv` (2 rows, 1 error, the record)."""
    folder = tmp_path_factory.mktemp("resume")
    for fold in (1, 3):
        torch.manual_seed(fold)
        best = folder / f"fold{fold}" / "best"
        Wav2Vec2ForFrameAlignedClassification(tiny_config(calibration_temperature=1.5)).save_pretrained(best)
        make_feature_extractor().save_pretrained(best)
    (folder / "audio").mkdir()
    for name in CLIPS:
        shutil.copy(POLISH3 / "audio" / name, folder / "audio" / name)
    (folder / "audio" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 8)
    (folder / "done").mkdir()
    assert predict("audio", "--model", folder / "fold1/best", "--output", folder / "done/p.csv", cwd=folder) == 2
    return folder


def predict(*argv, cwd):
    import os

    from modeling.cli.predict import main

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return main([str(a) for a in argv] + ["--no-progress"])
    finally:
        os.chdir(here)


def copied_outputs(job, tmp_path) -> dict[str, bytes]:
    for name in OUTPUTS:
        shutil.copy(job / "done" / name, tmp_path / name)
    return {name: (tmp_path / name).read_bytes() for name in OUTPUTS}


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "change, named",
    [
        (["--model", "fold3/best"], '--model: "{job}/fold1/best" → "{job}/fold3/best"'),
        (["--model", "fold3/best", "--retry-errors"], '--model: "{job}/fold1/best" → "{job}/fold3/best"'),
        (["--backend", "onnx"], '--backend: "torch" → "onnx"'),
        (["--window", "1", "--window-overlap", "0.25"], "--window: 20.0 → 1.0; --window-overlap: 4.0 → 0.25"),
        (["--no-calibration"], "calibration temperature (--no-calibration: 1): 1.5 → 1.0"),
        (["--segments", "auto"], '--segments: null → "auto"'),
    ],
    ids=["model", "model-retry-errors", "backend", "window", "calibration", "segments"],
)
def test_a_resume_with_other_settings_is_refused_and_writes_nothing(job, tmp_path, capsys, change, named):
    before = copied_outputs(job, tmp_path)
    argv = ["audio", "--model", "fold1/best", "--output", tmp_path / "p.csv", *change]
    capsys.readouterr()
    assert predict(*argv, cwd=job) == 2
    message = capsys.readouterr().err
    assert "p.csv: written by another job (p.job.json): " in message and named.format(job=job) in message
    assert "pass another --output, or delete the old files (p.csv, p.errors.csv, p.job.json) to start over" in message
    assert "(nothing written)" in message
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before  # rows, errors, record unchanged
    assert not (job / "fold1/best/onnx").exists()  # refused before the model was loaded (no ONNX export)


@pytest.mark.bad_input
def test_a_timeline_added_or_moved_on_a_resume_is_refused(job, tmp_path, capsys):
    """A timeline added on a resume would hold only the new files' lines (the earlier rows have none), one moved to
    another file (exit 0, "already done", no file written) would split them: another job, refused before anything is
    written. Dropped, it is this run's choice (no timeline asked for): the job resumes, and adding it back later is
    refused, since the files of that run have no line either."""
    before = copied_outputs(job, tmp_path)
    argv = ["audio", "--model", "fold1/best", "--output", tmp_path / "p.csv"]
    timeline = tmp_path / "p.jsonl"
    capsys.readouterr()
    assert predict(*argv, "--timeline", timeline, cwd=job) == 2
    message = capsys.readouterr().err
    assert f'written by another job (p.job.json): --timeline: null → "{timeline}". Resuming' in message
    assert "delete the old files (p.csv, p.errors.csv, p.jsonl, p.job.json) to start over" in message
    assert not timeline.exists()
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    for name in OUTPUTS:  # start over with a timeline: every file gets its line
        (tmp_path / name).unlink()
    assert predict("audio/" + CLIPS[0], *argv[1:], "--timeline", timeline, cwd=job) == 0
    assert len(timeline.read_text().splitlines()) == 1
    assert predict(*argv, "--timeline", tmp_path / "q.jsonl", cwd=job) == 2
    assert f'--timeline: "{timeline}" → "{tmp_path / "q.jsonl"}"' in capsys.readouterr().err
    assert not (tmp_path / "q.jsonl").exists()
    assert predict(*argv, cwd=job) == 2  # dropped: resumes (1 more clip, the corrupt file)
    assert json.loads((tmp_path / "p.job.json").read_text())["settings"]["timeline"] is None
    capsys.readouterr()
    assert predict(*argv, "--timeline", timeline, cwd=job) == 2
    assert f'--timeline: null → "{timeline}"' in capsys.readouterr().err


@pytest.mark.bad_input
def test_a_checkpoint_retrained_at_the_same_path_is_refused(job, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(job / "fold1/best", model)
    assert predict("audio", "--model", model, "--output", tmp_path / "p.csv", cwd=job) == 2  # the corrupt file
    rows = (tmp_path / "p.csv").read_bytes()
    shutil.copy(job / "fold3/best/model.safetensors", model / "model.safetensors")  # retrained: same path, size
    assert (model / "model.safetensors").stat().st_size == (job / "fold1/best/model.safetensors").stat().st_size
    capsys.readouterr()
    assert predict("audio", "--model", model, "--output", tmp_path / "p.csv", cwd=job) == 2
    message = capsys.readouterr().err
    old, new = (hashlib.sha256((job / f"fold{k}/best/model.safetensors").read_bytes()).hexdigest() for k in (1, 3))
    changed = "--model's files (config/weights: retrained or replaced at the same path): model.safetensors"
    assert f"written by another job (p.job.json): {changed} {old[:12]} → {new[:12]}. Resuming" in message
    assert "--model:" not in message  # the path is the same
    assert (tmp_path / "p.csv").read_bytes() == rows


def test_other_batch_size_threads_and_engine_independent_options_resume(job, tmp_path, capsys):
    """Batch size (batched equals one by one: tests/test_timeline.py), threads and writes per group do not change a
    row: the same job resumes."""
    before = copied_outputs(job, tmp_path)
    argv = ["audio", "--model", job / "fold1/best", "--output", tmp_path / "p.csv", "--batch-size", "2"]
    capsys.readouterr()
    assert predict(*argv, "--threads", "1", "--files-per-write", "1", "--retry-errors", cwd=job) == 2
    assert "0 file(s) predicted" in capsys.readouterr().out  # the corrupt file is tried again, failing again
    assert (tmp_path / "p.csv").read_bytes() == before["p.csv"]
    assert predict(*argv, cwd=job) == 0
    out = capsys.readouterr()
    assert "0 file(s) predicted" in out.out and "3 already done" in out.out and "warning" not in out.err


def test_an_output_written_before_the_record_resumes_with_a_warning_then_is_guarded(job, tmp_path, capsys):
    before = copied_outputs(job, tmp_path)
    (tmp_path / "p.job.json").unlink()
    capsys.readouterr()
    assert predict("audio", "--model", "fold1/best", "--output", tmp_path / "p.csv", cwd=job) == 0
    out = capsys.readouterr()
    assert "0 file(s) predicted" in out.out and "3 already done" in out.out
    warnings = [line for line in out.err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {tmp_path / 'p.csv'} holds rows written before job settings were recorded (p.job.json): the "
        "model and settings of those earlier rows are unknown; resuming with this command's"
    ]
    record = json.loads((tmp_path / "p.job.json").read_text())
    assert record["earlier_rows_unknown"] is True and record["settings"]["model"] == str(job / "fold1/best")
    assert (tmp_path / "p.csv").read_bytes() == before["p.csv"]
    # from now on the settings are recorded: another model is refused
    assert predict("audio", "--model", "fold3/best", "--output", tmp_path / "p.csv", cwd=job) == 2
    assert "written by another job" in capsys.readouterr().err


def test_a_new_output_gets_its_record_before_any_row(job, tmp_path):
    """No rows yet: just the record. The Ray engine's refusal comes before Ray starts (checked with the others)."""
    from modeling.inference.job_record import job_settings

    assert predict("audio/" + CLIPS[0], "--model", "fold3/best", "--output", tmp_path / "p.csv", cwd=job) == 0
    record = json.loads((tmp_path / "p.job.json").read_text())
    settings = {**job_settings(job / "fold3/best", "torch"), "timeline": None}
    assert record == {"settings": settings, "earlier_rows_unknown": False}
    files = record["settings"]["model_files"]
    assert sorted(files) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    weights = (job / "fold3/best/model.safetensors").read_bytes()
    assert files["model.safetensors"] == [len(weights), hashlib.sha256(weights).hexdigest()]


@pytest.mark.bad_input
def test_the_ray_engine_is_refused_with_the_other_arguments_before_ray_starts(job, tmp_path, capsys):
    """The local and Ray engines write the same rows (docs/scaling.md), so the engine is not recorded; another model
    is refused for both, before Ray starts (the driver's own check: `predict_files_on_ray` opens the outputs with
    the same record)."""
    import sys

    before = copied_outputs(job, tmp_path)
    argv = ["audio", "--model", "fold3/best", "--output", tmp_path / "p.csv", "--engine", "ray"]
    assert predict(*argv, cwd=job) == 2
    assert "written by another job (p.job.json): --model:" in capsys.readouterr().err
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


@pytest.mark.bad_input
def test_rows_still_unmerged_in_ray_parts_count_and_a_record_without_rows_is_replaced(job, tmp_path):
    """A Ray driver killed before its first merge leaves the CSV's header and the recorded blocks in
    `<output>.parts/`: those rows are the old job's (merged by the next run), so another model is refused. Old files
    deleted to start over (the record left behind): a new job, whose record replaces it."""
    from modeling.inference.job_record import job_settings, resume_problems

    copied_outputs(job, tmp_path)
    header = (tmp_path / "p.csv").read_bytes().splitlines(keepends=True)[0]
    (tmp_path / "p.csv").write_bytes(header)
    (tmp_path / "p.errors.csv").unlink()
    fold3 = job_settings(job / "fold3/best", "torch")
    assert resume_problems(tmp_path / "p.csv", fold3) == ([], None)  # no rows anywhere: a new job
    (tmp_path / "p.csv.parts").mkdir()
    (tmp_path / "p.csv.parts" / "manifest.jsonl").write_text('{"block": 0, "predicted": 2}\n')
    problems, _ = resume_problems(tmp_path / "p.csv", fold3)
    assert len(problems) == 1 and "--model: " in problems[0].message
    shutil.rmtree(tmp_path / "p.csv.parts")
    assert predict("audio/" + CLIPS[0], "--model", "fold3/best", "--output", tmp_path / "p.csv", cwd=job) == 0
    assert json.loads((tmp_path / "p.job.json").read_text())["settings"] == {**fold3, "timeline": None}


def test_the_library_call_records_and_checks_the_same_settings_as_predict_py(job, tmp_path, monkeypatch):
    """`predict_files(pipe, ...)` without `settings` derives them from the pipeline (its checkpoint, backend,
    temperature): predict.py's output resumes, another model's pipeline is refused, a calibration the checkpoint
    lacks is no difference (T = 1 either way: the same rows)."""
    from modeling.inference import load_pipeline
    from modeling.inference.batch import BatchJobError, collect_inputs, predict_files
    from modeling.inference.job_record import job_settings, pipeline_settings

    before = copied_outputs(job, tmp_path)
    recorded = json.loads(before["p.job.json"])["settings"]
    pipe = load_pipeline(job / "fold1/best")
    assert {**pipeline_settings(pipe), "timeline": None} == recorded
    assert pipeline_settings(load_pipeline(job / "fold1/best", calibrated=False))["temperature"] == 1.0
    monkeypatch.chdir(job)  # the fixture's job ran there, on "audio"
    paths = collect_inputs(["audio"])
    summary = predict_files(pipe, paths, tmp_path / "p.csv")
    assert (summary.predicted, summary.skipped) == (0, 3)
    with pytest.raises(BatchJobError, match=r"written by another job \(p.job.json\): --model: "):
        predict_files(load_pipeline(job / "fold3/best"), paths, tmp_path / "p.csv")
    assert {name: (tmp_path / name).read_bytes() for name in OUTPUTS} == before
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(job / "fold1/best", uncalibrated)
    config = json.loads((uncalibrated / "config.json").read_text())
    del config["calibration_temperature"]
    (uncalibrated / "config.json").write_text(json.dumps(config))
    assert job_settings(uncalibrated, "torch", calibration=False) == job_settings(uncalibrated, "torch")
