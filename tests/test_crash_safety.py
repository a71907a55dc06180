"""kill -9 of train.py at several moments of both stages, then the same command again: same final results."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import REPO
from test_training import write_config


def train_command(config: str, run_dir: Path) -> list[str]:
    return [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"]


def run_to_completion(config: str, run_dir: Path) -> dict:
    process = subprocess.run(train_command(config, run_dir), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def kill_when(config: str, run_dir: Path, ready, delay: float, what: str) -> str:
    """Start train.py, wait until `ready()` is true, wait `delay` seconds more, SIGKILL it; return its log."""
    log_path = run_dir.parent / f"log-{what.replace(' ', '_')}.txt"
    log = open(log_path, "w")
    process = subprocess.Popen(train_command(config, run_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    try:
        while not ready():
            assert process.poll() is None, f"train.py ended (code {process.returncode}) before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)
        time.sleep(delay)
        assert process.poll() is None, f"train.py ended before it could be killed at {what}"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()
    return log_path.read_text()


def numbers(results: dict) -> dict:
    fold = results["folds"]["1"]
    return {key: fold[key] for key in ("validation", "test", "stage1", "checkpoint")}


def assert_close(actual, expected, path="results"):
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-6), path
    else:
        assert actual == expected, path


@pytest.mark.slow
def test_kill_9_at_several_points_then_rerun_gives_the_uninterrupted_results(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", stage1={"epochs": 4}, stage2={"epochs": 4})
    reference = run_to_completion(config, tmp_path / "reference")

    run_dir = tmp_path / "run"
    fold = run_dir / "fold1"

    def checkpoint_folders(stage):
        return list((fold / stage).glob("checkpoint-*"))

    def complete_checkpoints(stage):
        return {int(path.name.split("-")[1]) for path in checkpoint_folders(stage) if (path / "trainer_state.json").is_file()}

    def new_complete_checkpoint(stage):
        before = complete_checkpoints(stage)
        return lambda: bool(complete_checkpoints(stage) - before)

    # 1. stage 1, the moment its first checkpoint folder appears: most likely in the middle of writing it
    kill_when(config, run_dir, lambda: checkpoint_folders("stage1"), 0.0, "the first stage-1 checkpoint folder")
    assert not (fold / "stage1" / "best").exists()
    # 2. stage 1 again, right after it completed a checkpoint
    kill_when(config, run_dir, new_complete_checkpoint("stage1"), 0.0, "a complete stage-1 checkpoint")
    assert not (fold / "stage1" / "best").exists()
    # 3. stage 2, right after it completed a checkpoint
    log = kill_when(config, run_dir, new_complete_checkpoint("stage2"), 0.0, "a complete stage-2 checkpoint")
    assert "resuming from " + str(fold / "stage1" / "checkpoint-") in log  # stage 1 continued, not restarted
    assert (fold / "stage1" / "best" / "model.safetensors").is_file() and not (fold / "stage2" / "best").exists()
    # 4. after stage 2's best model was saved, while the fold is being scored
    log = kill_when(config, run_dir, lambda: (fold / "stage2" / "best").exists(), 0.0, "scoring")
    assert "resuming from " + str(fold / "stage2" / "checkpoint-") in log
    assert not (fold / "metrics.json").exists() and not (run_dir / "results.json").exists()

    resumed = run_to_completion(config, run_dir)
    assert_close(numbers(resumed), numbers(reference))
    assert resumed["mean"] == pytest.approx(reference["mean"], abs=1e-6)
    # every JSON file the run left is complete, and no temporary leftovers remain
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())
    assert not [path for path in run_dir.rglob(".*.tmp*")]
