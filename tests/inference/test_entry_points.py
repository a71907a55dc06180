"""Issue 20: predict.py and the timeline check everything first, with train.py's `CheckError` machinery (every
problem listed, grouped by cause, nothing written); a model that is not a checkpoint says what was given and what
is expected (a run directory: its folds' best models); one exit-code rule (0 all done, 2 refused or some inputs
failed); `--backend onnx` on a Hub repository that holds the ONNX files push_to_hub.py publishes."""

import csv
import shutil
import sys

import numpy as np
import pytest
import torch
from helpers import POLISH3, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor


pytest.importorskip("onnxruntime")

from modeling.inference import load_pipeline  # noqa: E402
from modeling.inference.onnx_export import export_onnx  # noqa: E402


CLIPS = ["m1.a_nie_1.flac", "m1.n_nie_1.flac"]
EXPECTED = "expected a checkpoint folder (with config.json and model.safetensors, e.g. a run's fold1/stage2/best)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory holding two folds' stage-2 best models (tiny, random) and two real clips."""
    folder = tmp_path_factory.mktemp("entry")
    for fold in (1, 2):
        torch.manual_seed(fold)
        best = folder / "runs" / "demo" / f"fold{fold}" / "stage2" / "best"
        Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(best)
        make_feature_extractor().save_pretrained(best)
    (folder / "audio").mkdir()
    for name in CLIPS:
        shutil.copy(POLISH3 / "audio" / name, folder / "audio" / name)
    return folder


def predict(*argv):
    from modeling.cli.predict import main

    return main([str(a) for a in argv])


@pytest.mark.bad_input
@pytest.mark.parametrize(
    "model, found, hint",
    [
        ("runs/demo", "a folder without config.json", "It is a train.py run: pass one fold's best model, e.g. "),
        ("runs/dmeo/fold1/stage2/best", "no such folder", None),
        ("runs/demo/fold1/stage2/bets", "no such folder", "Did you mean runs/demo/fold1/stage2/best?"),
        ("runs/demo/fold1", "a folder without config.json", None),
    ],
)
def test_a_model_that_is_not_a_checkpoint_says_what_was_given_and_what_is_expected(
    run, monkeypatch, capsys, model, found, hint
):
    """The fresh user's `--model runs/demo` said "No frame-aligned model for model_type None", a typo "Repo id must
    be in the form..."; predict.py and the timeline now say what was given, what is expected and, for a run, which
    fold models it holds."""
    from modeling.cli.timeline import main as timeline_main

    monkeypatch.chdir(run)
    assert predict("audio", "--model", model, "--output", "out.csv") == 2
    message = capsys.readouterr().err
    assert f"--model: {model!r} is not a checkpoint: {found}; {EXPECTED} or a Hub model id (ORG/NAME)." in message
    if hint:
        assert hint in message
    if model == "runs/demo":
        assert "runs/demo/fold1/stage2/best, runs/demo/fold2/stage2/best." in message
    assert not (run / "out.csv").exists()  # nothing written
    assert timeline_main(["audio/" + CLIPS[0], "--model", model, "--json", "t.json"]) == 2
    assert f"{model!r} is not a checkpoint: {found}" in capsys.readouterr().err
    assert not (run / "t.json").exists()


@pytest.mark.bad_input
def test_predict_lists_every_problem_at_once_and_writes_nothing(run, monkeypatch, capsys):
    monkeypatch.chdir(run)
    (run / "lists").mkdir(exist_ok=True)
    (run / "lists" / "a.csv").write_text("name,label\nx.wav,a\n")
    argv = ["audio", "nothing/*.wav", "missing_folder/**/*.flac", "lists/a.csv", "--model", "runs/dmeo"]
    assert predict(*argv, "--output", "audio") == 2
    message = capsys.readouterr().err
    assert "4 problem(s) in predict.py's arguments (nothing written):" in message
    assert "inputs that match no file (2 times), e.g.:" in message
    assert "nothing/*.wav: matches no audio file" in message
    assert "lists/a.csv: row 1: no column file / file_name / path / audio with audio paths" in message
    assert "--output audio: is a folder; expected a file name" in message
    assert "'runs/dmeo' is not a checkpoint: no such folder" in message
    assert sorted(p.name for p in run.iterdir()) == ["audio", "lists", "runs"]


def test_exit_status_is_2_when_a_file_failed_and_no_empty_errors_file(run, monkeypatch, capsys):
    """predict.py exited 0 with files listed as failed (the timeline exits 2), and wrote an empty errors CSV when
    nothing failed."""
    monkeypatch.chdir(run)
    best = "runs/demo/fold1/stage2/best"
    assert predict("audio", "--model", best, "--output", "good.csv", "--no-progress") == 0
    assert not (run / "good.errors.csv").exists()
    with open(run / "good.csv") as f:
        assert sorted(row["file"] for row in csv.DictReader(f)) == [f"audio/{name}" for name in CLIPS]
    (run / "bad").mkdir(exist_ok=True)
    (run / "bad" / "corrupt.wav").write_bytes(b"RIFF....WAVEnot audio")
    assert predict("audio", "bad", "--model", best, "--output", "mixed.csv", "--no-progress") == 2
    assert "1 file(s) failed, listed with the reason in mixed.errors.csv" in capsys.readouterr().err
    with open(run / "mixed.errors.csv") as f:
        assert [row["file"] for row in csv.DictReader(f)] == ["bad/corrupt.wav"]
    # the same rule in --help and for the timeline
    from modeling.cli.predict import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "Exit status: 0 when every input was done;" in capsys.readouterr().out


def test_onnx_backend_on_a_hub_repository_with_the_published_onnx_files(run, hub, api, monkeypatch, tmp_path):
    """`predict.py --backend onnx --model ORG/NAME` was refused ("needs a local checkpoint folder"); a repository
    published with its onnx/ (push_to_hub.py) now runs on ONNX Runtime, downloading the config and ONNX files only;
    one without ONNX files says how to export them."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "local"
    shutil.copytree(run / "runs" / "demo" / "fold1" / "stage2" / "best", local)
    export_onnx(local)
    api.create_repo("org/ser-fold1")
    api.upload_folder(repo_id="org/ser-fold1", folder_path=str(local))
    api.create_repo("org/ser-noonnx")
    api.upload_folder(repo_id="org/ser-noonnx", folder_path=str(local), ignore_patterns=["onnx/*"])
    clip = str(run / "audio" / CLIPS[0])
    expected = load_pipeline(local, backend="onnx")(clip)
    from_hub = load_pipeline("org/ser-fold1", backend="onnx", cache_dir=str(tmp_path / "cache"))
    got = from_hub(clip)
    assert got["predicted"] == expected["predicted"]
    assert np.allclose(
        [s["prob_" + got["predicted"]] for s in got["timeline"]],
        [s["prob_" + got["predicted"]] for s in expected["timeline"]],
    )
    downloaded = {p.name for p in (tmp_path / "cache").rglob("*") if p.is_file() or p.is_symlink()}
    assert "model.onnx" in downloaded and "model.safetensors" not in downloaded  # no PyTorch weights
    with pytest.raises(ValueError, match=r"org/ser-noonnx: the Hub repository holds no onnx/model.onnx \(no ONNX"):
        load_pipeline("org/ser-noonnx", backend="onnx", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=r"holds no onnx/model_int8.onnx \(its ONNX files: model.onnx\)"):
        load_pipeline("org/ser-fold1", backend="onnx-int8", cache_dir=str(tmp_path / "cache"))


@pytest.mark.bad_input
@pytest.mark.parametrize("model", ["runs/demo/fold1", "runs/dmeo", "runs/demo/fold1/stage2/bets"])
def test_the_app_says_what_was_given_before_it_starts(run, monkeypatch, capsys, model):
    from modeling.app.launch import main

    monkeypatch.chdir(run)
    assert main(["--model", model]) == 2
    message = capsys.readouterr().err
    assert "error: 1 problem(s) in app.py's arguments (nothing started):" in message
    assert f"  - --model: {model!r} is not a checkpoint" in message
    assert EXPECTED in message


@pytest.mark.bad_input
def test_the_app_lists_a_bad_agreement_folder_with_the_model_and_exits_2(run, monkeypatch, capsys):
    """`--agreement-clips` with fewer than 2 files was a `SystemExit` (exit status 1, alone, after the model
    checks); it is listed with the other argument problems, exit status 2 like every command."""
    from modeling.app.launch import main

    monkeypatch.chdir(run)
    assert main(["--model", "runs/dmeo", "--agreement-clips", "audio/none*.wav"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: 2 problem(s) in app.py's arguments (nothing started):")
    assert "  - --agreement-clips audio/none*.wav: needs at least 2 audio files, found 0" in message
    assert "  - --model: 'runs/dmeo' is not a checkpoint" in message


@pytest.mark.bad_input
def test_the_timeline_lists_every_problem_at_once_and_writes_nothing(run, monkeypatch, capsys):
    from modeling.cli.timeline import main as timeline_main

    monkeypatch.chdir(run)
    argv = ["audio/" + CLIPS[0], "--model", "runs/demo", "--segments", "nope", "--out", "audio", "--lanes", "l.png"]
    assert timeline_main(argv) == 2
    message = capsys.readouterr().err
    assert "3 problem(s) in the timeline's arguments (nothing written):" in message
    assert "--out audio: is a folder; expected a file name" in message
    assert "--segments nope: no such file or folder (expected a segment file, auto or a folder)" in message
    assert "'runs/demo' is not a checkpoint: a folder without config.json" in message
    assert not (run / "l.png").exists()


@pytest.mark.bad_input
def test_window_settings_and_mistyped_inputs_are_refused_before_any_file_is_read(run, monkeypatch, capsys):
    """`--window 2` (shorter than the 4 s overlap) failed every file longer than 2 s, one errors.csv row each;
    `--window -1` was accepted; a mistyped folder (`audi`) became one failed file with a header-only CSV and an
    errors.csv. All are argument mistakes: refused together, nothing written, the closest existing name given."""
    from modeling.cli.timeline import main as timeline_main

    monkeypatch.chdir(run)
    best = "runs/demo/fold1/stage2/best"
    assert predict("audi", "--model", best, "--output", "out.csv", "--window", "2") == 2
    message = capsys.readouterr().err
    assert "2 problem(s) in predict.py's arguments (nothing written):" in message
    assert "audi: no such file or folder. Did you mean audio?" in message
    assert "--window=2.0 must be longer than --window-overlap=4.0 (consecutive windows overlap by" in message
    assert predict("audio", "--model", best, "--output", "out.csv", "--window", "-1", "--window-overlap", "-2") == 2
    message = capsys.readouterr().err
    assert "--window=-1.0: expected a number of seconds ≥ 0." in message
    assert "--window-overlap=-2.0: expected a number of seconds ≥ 0." in message
    assert not (run / "out.csv").exists() and not (run / "out.errors.csv").exists()  # nothing written
    argv = ["audio/" + CLIPS[0], "audio/" + CLIPS[1][:-1], "--model", best, "--json", "t.json", "--window", "2"]
    assert timeline_main(argv) == 2
    message = capsys.readouterr().err
    assert "--window=2.0 must be longer than --window-overlap=4.0" in message
    assert f"audio/{CLIPS[1][:-1]}: no such file or folder. Did you mean audio/{CLIPS[1]} or" in message
    assert not (run / "t.json").exists()
    # a short window with a shorter overlap runs: the clips (> 2 s) in windows, every file done
    argv = ["audio", "--model", best, "--output", "short.csv", "--window", "2", "--window-overlap", "0.5"]
    assert predict(*argv, "--no-progress") == 0
    assert not (run / "short.errors.csv").exists()
    with open(run / "short.csv") as f:
        assert sorted(row["file"] for row in csv.DictReader(f)) == [f"audio/{name}" for name in CLIPS]


@pytest.mark.bad_input
def test_the_ray_engine_checks_the_window_against_the_model_before_ray_starts(run, monkeypatch, capsys):
    """`--engine ray` loads no model in this process (its actors do): a window shorter than two receptive fields
    passed the default-geometry check and then failed every file in the actors. The checkpoint's own geometry is
    read from its config files, as the pipeline has it once loaded; nothing is written and Ray is not started."""
    from modeling.frames import frame_geometry
    from modeling.inference.checks import checkpoint_window_geometry

    monkeypatch.chdir(run)
    best = "runs/demo/fold1/stage2/best"
    pipe = load_pipeline(best)
    assert checkpoint_window_geometry(best) == {"sampling_rate": 16000, "receptive_field": pipe.receptive_field}
    assert pipe.receptive_field == frame_geometry(pipe.model.config).receptive_field == 40  # the tiny conv stack
    argv = ["audio", "--model", best, "--output", "ray.csv", "--engine", "ray", "--window", "0.004"]  # 64 samples
    assert predict(*argv, "--window-overlap", "0") == 2
    message = capsys.readouterr().err
    assert "  - --window=0.004 is shorter than two receptive fields of the model (0.005 s)." in message
    assert not (run / "ray.csv").exists()
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    # the library call checks on the driver too (its pipeline, loaded there for the labels), before Ray starts
    pytest.importorskip("ray.data")
    from modeling.inference.ray_engine import predict_files_on_ray

    settings = {"window_length_s": 0.004, "window_overlap_s": 0}
    with pytest.raises(ValueError, match=r"window_length_s=0.004 is shorter than two receptive fields"):
        predict_files_on_ray(best, ["audio/" + CLIPS[0]], "ray.csv", pipeline_kwargs=settings)
    assert not (run / "ray.csv").exists() and not sys.modules["ray"].is_initialized()
