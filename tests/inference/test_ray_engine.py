"""`predict.py --engine ray` (`modeling/inference/ray_engine.py`) on a real local Ray with 2 CPUs: the same CSV as
the local engine on a folder with bad and awkward files (every backend); `kill -9` of a Ray worker inside a block and
of the driver, each followed by a complete CSV with every file exactly once; a file that kills its worker every time
costs only itself; without Ray the engine says how to install it and the local engine still works.

One Ray session serves the whole module (`ray_session` fixture); the driver-kill test starts its own in a subprocess.
"""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import ray
from helpers import POLISH3, REPO, markdown_blocks
from test_inference import awkward_folder, read_csv, save_checkpoint

from modeling.cli.predict import main
from modeling.inference.batch import BatchJobError, collect_inputs
from modeling.inference.job_record import record_path
from modeling.inference.ray_engine import parts_folder, predict_files_on_ray
from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV


MARKER = re.compile(r"fault point (\S+): \w+ \(hit \d+, pid (\d+)\)")
MARKER_WAIT_S = 240  # an upper bound for a worker to reach a fault point (seconds on 2 shared cores), never a timing


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three real clips, a 48 kHz stereo copy, a 0.1 s clip, a corrupt file and a truncated FLAC (test_inference)."""
    folder = tmp_path_factory.mktemp("awkward") / "audio"
    awkward_folder(folder)
    return folder


def local_outputs(checkpoint, folder, directory, backend="torch"):
    """The local engine's outputs (2 files per write, as the Ray runs use 2 files per block)."""
    directory.mkdir(exist_ok=True)
    output = directory / f"local-{backend}.csv"
    if not output.exists():
        argv = [str(folder), "--model", str(checkpoint), "--output", str(output), "--backend", backend]
        # 2: the corrupt and truncated files failed (listed), the others are done
        assert main(argv + ["--files-per-write", "2", "--timeline", str(output.with_suffix(".jsonl"))]) == 2
    return output


def assert_same_outputs(got, expected):
    """Same rows (any order): file, duration, predicted class equal; probabilities within 1e-5; same error rows;
    timeline segments with the same classes and bounds."""
    rows, reference = read_csv(got), read_csv(expected)
    assert list(rows[0]) == list(reference[0])
    files = [row["file"] for row in rows]
    assert len(files) == len(set(files)) and sorted(files) == sorted(row["file"] for row in reference)
    by_file = {row["file"]: row for row in reference}
    for row in rows:
        other = by_file[row["file"]]
        assert (row["duration_s"], row["predicted"]) == (other["duration_s"], other["predicted"]), row["file"]
        for column in [name for name in row if name.startswith("prob_")]:
            assert abs(float(row[column]) - float(other[column])) <= 1e-5, (row["file"], column)
    errors = got.with_name(got.stem + ".errors.csv"), expected.with_name(expected.stem + ".errors.csv")
    error_rows = [sorted(map(tuple, csv.reader(open(path)))) if path.exists() else None for path in errors]
    assert error_rows[0] == error_rows[1]  # None: no file failed, and no errors CSV was written
    timelines = [
        {
            record["file"]: [(s["predicted"], s["start_s"], s["end_s"]) for s in record["timeline"]]
            for record in map_lines(p)
        }
        for p in (got.with_suffix(".jsonl"), expected.with_suffix(".jsonl"))
    ]
    if got.with_suffix(".jsonl").exists():
        assert timelines[0] == timelines[1]


def map_lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.bad_input
# the ONNX backends under Ray (38 s together) in make test-all; make test keeps the torch one
@pytest.mark.parametrize(
    "backend",
    ["torch", pytest.param("onnx", marks=pytest.mark.heavy), pytest.param("onnx-int8", marks=pytest.mark.heavy)],
)
def test_ray_engine_csv_equals_the_local_engine_csv(ray_session, checkpoint, folder, tmp_path_factory, backend):
    directory = tmp_path_factory.getbasetemp() / "outputs"
    expected = local_outputs(checkpoint, folder, directory, backend)
    output = directory / f"ray-{backend}.csv"
    argv = [str(folder), "--model", str(checkpoint), "--output", str(output), "--backend", backend, "--engine", "ray"]
    actors = "2" if backend == "torch" else "1"  # (each actor start costs seconds of CPU)
    argv += ["--actors", actors, "--files-per-write", "2", "--timeline", str(output.with_suffix(".jsonl"))]
    assert main(argv + ["--no-progress"]) == 2  # the corrupt and truncated files failed (listed)
    assert_same_outputs(output, expected)
    errors = {os.path.basename(row["file"]): row["error"] for row in read_csv(directory / f"ray-{backend}.errors.csv")}
    assert sorted(errors) == ["corrupt.wav", "truncated.flac"]  # the truncated FLAC failed inside its block
    assert errors["truncated.flac"] == "cannot decode audio (Error : flac decoder lost sync.)."
    durations = [float(row["duration_s"]) for row in read_csv(output)]
    assert durations == sorted(durations, reverse=True) and min(durations) == 0.1  # longest first, as locally
    assert not parts_folder(output).exists()  # every part merged
    # a re-run does nothing
    summary = predict_files_on_ray(checkpoint, collect_inputs([str(folder)]), output, backend=backend, progress=False)
    assert (summary.predicted, summary.failed, summary.skipped) == (0, 0, 7)
    # the driver recorded the job's settings (job_record); the engine is not one of them (the same rows): the local
    # engine's output resumes on Ray; another model at the same output is refused, before anything is written
    assert json.loads(record_path(output).read_text())["settings"]["backend"] == backend
    paths = collect_inputs([str(folder)])
    summary = predict_files_on_ray(checkpoint, paths, expected, backend=backend, progress=False)
    assert (summary.predicted, summary.failed, summary.skipped) == (0, 0, 7)
    other = tmp_path_factory.mktemp("other-ckpt")
    save_checkpoint(other)
    rows = output.read_bytes()
    with pytest.raises(BatchJobError, match=r"written by another job \(ray-[\w-]+\.job\.json\): --model: "):
        predict_files_on_ray(other, paths, output, backend=backend, progress=False)
    assert output.read_bytes() == rows


def run_on_ray(checkpoint, folder, output, **kwargs):
    """The Ray engine on `folder` (in the module's Ray session): 2 actors, 2 files per block, with a timeline."""
    settings = dict(actors=2, files_per_block=2, timeline_path=output.with_suffix(".jsonl"), progress=False)
    return predict_files_on_ray(checkpoint, collect_inputs([str(folder)]), output, **settings | kwargs)


def wait_for_markers(log, count):
    """The fault markers of the log once it holds `count` of them: [(point, pid)]."""
    deadline = time.monotonic() + MARKER_WAIT_S
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return [(name, int(pid)) for name, pid in (MARKER.fullmatch(line).groups() for line in lines)]
        time.sleep(0.2)
    pytest.fail(f"no fault marker #{count} in {log} after {MARKER_WAIT_S} s")


@pytest.mark.bad_input
@pytest.mark.heavy  # actor restarts under Ray: minutes (and RPC timeouts) on a loaded 2-core machine
def test_kill_9_of_a_worker_inside_a_block_retries_the_block(
    ray_session, checkpoint, folder, tmp_path, tmp_path_factory, monkeypatch
):
    """The worker running block 1 stops itself once it predicted the block (fault point, SIGSTOP), is killed with
    SIGKILL from here; Ray restarts the actor and runs block 1 again (a second marker, another pid), the job
    completes: every file exactly once, the local engine's values."""
    log = tmp_path / "faults.log"
    monkeypatch.setenv(FAULT_ENV, "predict:ray:block1:predicted:stop")
    monkeypatch.setenv(FAULT_LOG_ENV, str(log))
    output = tmp_path / "predictions.csv"
    outcome = {}

    def job():
        outcome["summary"] = run_on_ray(checkpoint, folder, output)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    [(point, first_pid)] = wait_for_markers(log, 1)
    assert point == "predict:ray:block1:predicted"
    os.kill(first_pid, signal.SIGKILL)
    second = wait_for_markers(log, 2)[1]
    assert second[0] == point and second[1] != first_pid  # the same block, retried in a new worker process
    os.kill(second[1], signal.SIGCONT)
    thread.join(MARKER_WAIT_S)
    assert not thread.is_alive(), "the job did not finish after the retried block went on"
    summary = outcome["summary"]
    assert (summary.predicted, summary.failed) == (5, 2)
    assert_same_outputs(output, local_outputs(checkpoint, folder, tmp_path_factory.getbasetemp() / "outputs"))


@pytest.mark.bad_input
@pytest.mark.heavy  # actor restarts under Ray: minutes (and RPC timeouts) on a loaded 2-core machine
def test_kill_9_of_the_driver_then_the_rerun_predicts_only_the_rest(
    ray_session, checkpoint, folder, tmp_path, tmp_path_factory
):
    """`predict.py --engine ray` (its own local Ray) is killed right after it recorded its second block; the same
    command then merges what was recorded and predicts only the other files."""
    output = tmp_path / "predictions.csv"
    command = [sys.executable, "predict.py", str(folder), "--model", str(checkpoint), "--output", str(output)]
    command += ["--engine", "ray", "--actors", "1", "--files-per-write", "2", "--no-progress"]
    command += ["--timeline", str(output.with_suffix(".jsonl"))]
    log = tmp_path / "faults.log"
    env = {**os.environ, FAULT_ENV: "predict:ray:part-recorded:kill@2", FAULT_LOG_ENV: str(log)}
    process = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = process.communicate(timeout=600)
    finally:  # the killed driver's local Ray (its child processes) goes with it
        with_group = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True).stdout.split()
        for pid in map(int, with_group):
            os.kill(pid, signal.SIGKILL)
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    assert "fault point predict:ray:part-recorded:block" in log.read_text() and "(hit 2," in log.read_text()
    manifest = map_lines(parts_folder(output) / "manifest.jsonl")
    assert len(manifest) == 2  # two blocks recorded; at most the first in order merged
    recorded = sum(entry["predicted"] for entry in manifest)
    assert len(read_csv(output)) < recorded  # the block recorded last was not merged: its part files wait
    assert list(parts_folder(output).glob("part-*.csv"))
    # the same command, here with the module's Ray session: only what was not recorded is predicted
    summary = run_on_ray(checkpoint, folder, output, actors=1)
    assert summary.predicted == 5 - recorded  # nothing recorded before the kill is predicted again
    assert summary.skipped == 1 + sum(entry["predicted"] + entry["failed"] for entry in manifest)  # + corrupt.wav
    assert_same_outputs(output, local_outputs(checkpoint, folder, tmp_path_factory.getbasetemp() / "outputs"))
    assert not parts_folder(output).exists()


@pytest.mark.bad_input
def test_a_merge_interrupted_after_its_rows_is_redone_without_duplicates(tmp_path, monkeypatch):
    """The driver dies after appending a block's rows to the final CSV but before removing its part files (fault
    point `predict:group-written`, here a raise): the next run merges the part again and writes each file once."""
    from modeling.inference.batch import JobOutputs, _row
    from modeling.inference.output_files import csv_text
    from modeling.inference.ray_engine import PartFiles
    from modeling.rundir.faults import FaultInjected

    labels = ["anger", "neutral"]
    output = tmp_path / "predictions.csv"

    def result(block, files):
        result = {"duration_s": 1.5, "predicted": "neutral", "prob_anger": 0.25, "prob_neutral": 0.75}
        rows = [_row(f, result, labels) for f in files]
        rows_text = csv_text(rows).decode()
        return {"block": block, "predicted": len(files), "failed": 0, "audio_seconds": 1.5, "rows": rows_text}

    parts = PartFiles(output, JobOutputs.open(output, labels))
    parts.merge_leftovers()
    monkeypatch.setenv(FAULT_ENV, "predict:group-written:raise")
    with pytest.raises(FaultInjected):
        parts.record({**result(0, ["a.wav", "b.wav"]), "errors": "c.wav,cannot decode audio\n", "timeline": ""})
    assert [row["file"] for row in read_csv(output)] == ["a.wav", "b.wav"]  # merged, part files still there
    assert (parts_folder(output) / "part-000000.csv").exists()
    monkeypatch.delenv(FAULT_ENV)
    outputs = JobOutputs.open(output, labels)
    again = PartFiles(output, outputs)
    assert again.merge_leftovers() == 3
    assert [row["file"] for row in read_csv(output)] == ["a.wav", "b.wav"]
    assert [row["file"] for row in read_csv(tmp_path / "predictions.errors.csv")] == ["c.wav"]
    assert again.record({**result(0, ["d.wav"]), "errors": "", "timeline": ""})
    assert not again.record({**result(0, ["d.wav"]), "errors": "", "timeline": ""})  # a block arriving twice
    assert [row["file"] for row in read_csv(output)] == ["a.wav", "b.wav", "d.wav"]
    assert read_csv(output)[0] == {
        "file": "a.wav",
        "duration_s": "1.500",
        "predicted": "neutral",
        "prob_anger": "0.250000",
        "prob_neutral": "0.750000",
    }


HIDE_RAY = """
import importlib.abc, sys

class HideRay(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, HideRay())
sys.argv[0] = "predict.py"
from modeling.cli.predict import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.heavy  # two fresh predict.py processes with Ray hidden (~50 CPU-s): the install hint when Ray is missing
@pytest.mark.bad_input
def test_without_ray_the_ray_engine_says_how_to_install_it_and_the_local_engine_works(tmp_path, checkpoint, folder):
    def predict(*extra):
        command = [sys.executable, "-c", HIDE_RAY, str(folder), "--model", str(checkpoint), "--no-progress", *extra]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)

    refused = predict("--output", str(tmp_path / "ray.csv"), "--engine", "ray")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert 'error: the Ray engine needs Ray Data: pip install -e ".[ray]"' in refused.stderr
    assert "No module named 'ray'" in refused.stderr and not (tmp_path / "ray.csv").exists()
    local = predict("--output", str(tmp_path / "local.csv"))
    assert local.returncode == 2, local.stderr[-2000:]  # 2: corrupt.wav and truncated.flac failed
    assert len(read_csv(tmp_path / "local.csv")) == 5


@pytest.mark.bad_input
@pytest.mark.heavy  # actor restarts under Ray: minutes (and RPC timeouts) on a loaded 2-core machine
def test_a_file_that_kills_its_worker_every_time_costs_only_that_file(
    ray_session, checkpoint, folder, tmp_path, tmp_path_factory, monkeypatch
):
    """Every worker process that takes a block holding short.wav dies (SIGKILL at a fault point): Ray drops the
    block (max_retries=0: the retry itself is the worker-kill test's); its files run again one per block and only
    short.wav is lost, listed with the reason. Its block-mate is predicted, with the local engine's values."""
    log = tmp_path / "faults.log"
    monkeypatch.setenv(FAULT_ENV, "predict:ray:file:short.wav:kill")
    monkeypatch.setenv(FAULT_LOG_ENV, str(log))
    output = tmp_path / "predictions.csv"
    summary = run_on_ray(checkpoint, folder, output, actors=1, max_retries=0, timeline_path=None)
    assert (summary.predicted, summary.failed) == (4, 3)
    assert len(wait_for_markers(log, 2)) == 2  # one death in its block of 2, one alone
    errors = {os.path.basename(row["file"]): row["error"] for row in read_csv(tmp_path / "predictions.errors.csv")}
    assert errors.pop("short.wav") == "the worker process died once on this file (out of memory? a crash?)"
    assert sorted(errors) == ["corrupt.wav", "truncated.flac"]
    reference = {
        row["file"]: row
        for row in read_csv(local_outputs(checkpoint, folder, tmp_path_factory.getbasetemp() / "outputs"))
    }
    rows = read_csv(output)
    assert sorted(row["file"] for row in rows) == sorted(f for f in reference if not f.endswith("short.wav"))
    for row in rows:
        assert row["predicted"] == reference[row["file"]]["predicted"]
        for column in [name for name in row if name.startswith("prob_")]:
            assert float(row[column]) == pytest.approx(float(reference[row["file"]][column]), abs=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# docs/scaling.md, as written
# ----------------------------------------------------------------------------------------------------------------

SCALING_PAGE = REPO / "docs" / "scaling.md"


@pytest.fixture
def demo_folder(tmp_path, checkpoint, monkeypatch):
    """A folder holding runs/demo/fold1/stage2/best (the tiny checkpoint) and data/polish3 (4 real clips), and
    predict.py; the current directory."""
    import shutil

    shutil.copytree(checkpoint, tmp_path / "runs/demo/fold1/stage2/best", ignore=shutil.ignore_patterns("onnx"))
    audio = tmp_path / "data/polish3/audio"
    audio.mkdir(parents=True)
    for name in ["m1.a_nie_1.flac", "m1.n_nie_1.flac", "m2.s_stop_1.flac", "m3.a_nie_2.flac"]:
        shutil.copy(POLISH3 / "audio" / name, audio / name)
    shutil.copy(REPO / "predict.py", tmp_path / "predict.py")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# heavy: the scaling page's Ray commands (45 s); make test keeps the Ray engine = local engine tests
@pytest.mark.heavy
def test_scaling_page_ray_commands_and_snippet_run_as_written(ray_session, demo_folder, capsys):
    import shlex

    commands = markdown_blocks(SCALING_PAGE, "bash")[0]
    lines = [line.split("   #")[0].strip() for line in commands.splitlines()]
    assert lines[0] == 'pip install -e ".[ray]"'
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '\nray = ["ray[data]>=' in pyproject
    own = re.findall(r'"frame-aligned-ser\[([a-z,]+)\]"', pyproject.split("\ntest = [")[1].split("]\n")[0] + "]")
    assert any("ray" in names.split(",") for names in own), own  # CI (the test extra) installs it
    for command in lines[1:]:
        argv = shlex.split(command)
        assert argv[:2] == ["python", "predict.py"] and "--engine" in argv
        assert main(argv[2:]) == 0, command
    printed = capsys.readouterr().out
    assert "0 file(s) predicted" in printed and "4 already done" in printed  # the second command resumed
    assert len(read_csv("runs/predictions.csv")) == 4
    assert sorted(os.path.basename(row["file"]) for row in read_csv("runs/m1.csv")) == [
        "m1.a_nie_1.flac",
        "m1.n_nie_1.flac",
    ]
    assert len((demo_folder / "runs/m1.jsonl").read_text().splitlines()) == 2
    assert (demo_folder / "runs/demo/fold1/stage2/best/onnx/model_int8.onnx").is_file()
    [snippet] = markdown_blocks(SCALING_PAGE, "python")
    exec(snippet, {})
    assert "4 file(s) predicted" in capsys.readouterr().out
    # onnx vs torch: within 1e-5
    assert_same_outputs(demo_folder / "runs/ray.csv", demo_folder / "runs/predictions.csv")


# heavy: a local Ray cluster started and stopped by the page's commands (~50 CPU-s + the Ray daemons); the page's
# other commands run in make test
@pytest.mark.heavy
def test_scaling_page_cluster_commands_run_as_written(demo_folder):
    """`ray start --head`, then `predict.py --address`: a job joining a running cluster. The page's last line,
    `ray stop`, would stop every Ray on the machine (this module's too): the test stops the processes the block
    started instead, by their process group."""
    cluster = markdown_blocks(SCALING_PAGE, "bash")[1]
    lines = [line.split("   #")[0].strip() for line in cluster.splitlines()]
    assert lines[2] == "ray start --head --port 6379 --num-cpus 2" and lines[-1] == "ray stop"
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    script = "set -e\n" + "\n".join(lines[:-1])
    shell = subprocess.Popen(
        ["bash", "-c", script], env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = shell.communicate(timeout=400)
    finally:  # the head's processes stay in the shell's process group
        with_group = subprocess.run(["pgrep", "-g", str(shell.pid)], capture_output=True, text=True).stdout.split()
        for pid in map(int, with_group):
            os.kill(pid, signal.SIGKILL)
    assert shell.returncode == 0, output.decode()[-3000:]
    assert "Ray runtime started" in output.decode() and "4 file(s) predicted" in output.decode()
    assert len(read_csv(demo_folder / "runs/cluster.csv")) == 4
