"""Crash safety of a run: kill -9 of train.py at named moments of both stages, then the same command again gives the
results of an uninterrupted run; interrupted checkpoint saves are never resumed from.

Every kill lands at a fault point (`modeling.rundir.faults.fault_point`), and each test checks that it did: no timing.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO
from runs import write_config
from safetensors.torch import save_file

from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV
from modeling.training.checkpoints import CHECKPOINT_FILES, is_complete_checkpoint, latest_checkpoint


# ---------------------------------------------------------------------------------------------------------------
# Interrupted checkpoint saves, as files (no subprocess)
# ---------------------------------------------------------------------------------------------------------------

# The files of a Trainer checkpoint these tests look at, in the order `Trainer._save_checkpoint` writes them
# (save_model: config, weights, training_args.bin; then optimizer, scheduler, RNG states; trainer_state.json last).
# The kill test below checks them against real checkpoints interrupted at the fault points.
SAVED_IN_ORDER = (
    "config.json",
    "model.safetensors",
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
)


def write_checkpoint(stage_dir: Path, step: int, files=SAVED_IN_ORDER, trainer_state: str | None = None) -> Path:
    folder = stage_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_bytes(b"\0" * 64)
    if "model.safetensors" in files:  # a real one: checkpoints are verified (`integrity.checkpoint_problems`)
        save_file({"weight": torch.arange(16, dtype=torch.float32)}, folder / "model.safetensors")
    if "trainer_state.json" in files:
        text = json.dumps({"global_step": step, "best_global_step": step, "log_history": [{"loss": 1.0}] * 20})
        (folder / "trainer_state.json").write_text(text if trainer_state is None else trainer_state)
    return folder


_FULL_STATE = json.dumps({"global_step": 6, "best_global_step": 6, "log_history": [{"loss": 1.0}] * 20})
INTERRUPTED_SAVES = {
    # killed after the weights (fault point checkpoint:before-optimizer)
    "weights only": dict(files=SAVED_IN_ORDER[:3]),
    # killed before the last file (checkpoint:before-trainer-state)
    "no trainer_state.json": dict(files=SAVED_IN_ORDER[:-1]),
    # killed while trainer_state.json was being written (the Trainer writes it in place)
    "half a trainer_state.json": dict(trainer_state=_FULL_STATE[: len(_FULL_STATE) // 2]),
    "empty trainer_state.json": dict(trainer_state=""),
    "no optimizer.pt": dict(files=tuple(name for name in SAVED_IN_ORDER if name != "optimizer.pt")),
    "no scheduler.pt": dict(files=tuple(name for name in SAVED_IN_ORDER if name != "scheduler.pt")),
}


def test_checkpoint_files_are_what_the_trainer_writes():
    assert set(CHECKPOINT_FILES) <= set(SAVED_IN_ORDER) and CHECKPOINT_FILES[-1] == SAVED_IN_ORDER[-1]


@pytest.mark.parametrize("case", INTERRUPTED_SAVES)
def test_latest_checkpoint_skips_an_interrupted_save_and_removes_it(tmp_path, case):
    stage_dir = tmp_path / "stage1"
    complete = write_checkpoint(stage_dir, 3)
    broken = write_checkpoint(stage_dir, 6, **INTERRUPTED_SAVES[case])
    assert is_complete_checkpoint(complete) and not is_complete_checkpoint(broken)
    # the newest complete one, the interrupted one left in place when not removing
    assert latest_checkpoint(stage_dir, remove_incomplete=False) == str(complete)
    assert broken.is_dir()
    assert latest_checkpoint(stage_dir, remove_incomplete=True) == str(complete)
    assert not broken.exists()
    assert sorted(p.name for p in complete.iterdir()) == sorted(SAVED_IN_ORDER)


def test_latest_checkpoint_with_only_interrupted_saves_is_none(tmp_path):
    stage_dir = tmp_path / "stage1"
    for step, case in zip((3, 6, 9), ("weights only", "half a trainer_state.json", "no optimizer.pt")):
        write_checkpoint(stage_dir, step, **INTERRUPTED_SAVES[case])
    assert latest_checkpoint(stage_dir, remove_incomplete=False) is None
    assert latest_checkpoint(stage_dir, remove_incomplete=True) is None
    assert list(stage_dir.iterdir()) == []


def test_latest_checkpoint_is_the_newest_complete_one_by_step(tmp_path):
    stage_dir = tmp_path / "stage1"
    for step in (3, 9, 12):
        write_checkpoint(stage_dir, step)
    write_checkpoint(stage_dir, 15, **INTERRUPTED_SAVES["no trainer_state.json"])
    assert latest_checkpoint(stage_dir, remove_incomplete=True) == str(stage_dir / "checkpoint-12")
    assert sorted(p.name for p in stage_dir.iterdir()) == ["checkpoint-12", "checkpoint-3", "checkpoint-9"]


# ---------------------------------------------------------------------------------------------------------------
# kill -9 of train.py at named points, then the same command again
# ---------------------------------------------------------------------------------------------------------------


def train_command(config: str, run_dir: Path) -> list[str]:
    return [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"]


def no_fault_environment() -> dict:
    return {key: value for key, value in os.environ.items() if key not in (FAULT_ENV, FAULT_LOG_ENV)}


def run_to_completion(config: str, run_dir: Path) -> dict:
    process = subprocess.run(
        train_command(config, run_dir),
        cwd=REPO,
        env=no_fault_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads((run_dir / "results.json").read_text())


def kill_at(config: str, run_dir: Path, point: str, hit: int = 1) -> str:
    """Run train.py until it reaches fault point `point` for the `hit`-th time, where it SIGKILLs itself; assert
    that it died there (not earlier, not of something else, not at the end); return its output."""
    marker_log = run_dir.parent / "faults.log"
    marker_log.unlink(missing_ok=True)
    env = {**no_fault_environment(), FAULT_ENV: f"{point}:kill@{hit}", FAULT_LOG_ENV: str(marker_log)}
    process = subprocess.run(
        train_command(config, run_dir),
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )
    where = f"fault point {point}: kill (hit {hit}, pid "
    assert process.returncode == -signal.SIGKILL, (
        f"not killed at {point} (code {process.returncode})\n" + (process.stdout[-3000:])
    )
    markers = marker_log.read_text().splitlines() if marker_log.exists() else []
    assert len(markers) == 1 and markers[0].startswith(where), markers
    assert where in process.stdout
    return process.stdout


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


def saved_files(checkpoint: Path) -> set[str]:
    """Which of the files a Trainer checkpoint is saved as are in `checkpoint`."""
    return {name for name in SAVED_IN_ORDER if (checkpoint / name).is_file()}


def checkpoints(stage_dir: Path) -> list[Path]:
    return sorted(stage_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def training_history(stage_dir: Path) -> dict:
    """The last checkpoint's trainer state: every logged loss, learning rate and gradient norm, every evaluation
    (timings left out). The final scores alone would miss a wrong resume: on the tiny run they barely move."""
    state = json.loads((checkpoints(stage_dir)[-1] / "trainer_state.json").read_text())
    history = [
        {key: value for key, value in entry.items() if "runtime" not in key and "per_second" not in key}
        for entry in state["log_history"]
    ]
    return {key: state[key] for key in ("global_step", "best_global_step", "best_metric")} | {"log_history": history}


def test_training_history_sees_the_losses(tmp_path):
    """The comparison below is only as good as what `training_history` keeps."""
    stage_dir = tmp_path / "stage1"
    state = {
        "global_step": 6,
        "best_global_step": 3,
        "best_metric": 0.5,
        "log_history": [
            {"loss": 1.25, "grad_norm": 2.0, "learning_rate": 1e-3, "step": 1},
            {"eval_loss": 1.1, "eval_ua": 0.5, "eval_runtime": 0.3, "eval_samples_per_second": 40.0, "step": 3},
        ],
    }
    write_checkpoint(stage_dir, 6, trainer_state=json.dumps(state))
    history = training_history(stage_dir)
    assert history["log_history"][0] == state["log_history"][0]
    assert history["log_history"][1] == {"eval_loss": 1.1, "eval_ua": 0.5, "step": 3}
    assert history["best_global_step"] == 3


@pytest.mark.slow
# heavy: kill -9 at every named point of a run, each rerun to the end (124 s); make test keeps test_inference's kill -9
# and the in-process crash tests
@pytest.mark.heavy
def test_kill_9_at_named_points_then_rerun_gives_the_uninterrupted_results(tmp_path):
    config = write_config(tmp_path / "tiny.yaml", stage1={"epochs": 4}, stage2={"epochs": 4})
    reference_dir = tmp_path / "reference"
    reference = run_to_completion(config, reference_dir)

    run_dir = tmp_path / "run"
    fold = run_dir / "fold1"
    stage1, stage2 = fold / "stage1", fold / "stage2"

    # 1. stage 1's second checkpoint: killed after its weights, before optimizer.pt, scheduler.pt, trainer_state.json
    kill_at(config, run_dir, "checkpoint:before-optimizer:stage1", hit=2)
    first, second = checkpoints(stage1)
    assert is_complete_checkpoint(first) and saved_files(first) == set(SAVED_IN_ORDER)
    assert saved_files(second) == set(INTERRUPTED_SAVES["weights only"]["files"])

    # 2. stage 1 resumes from its first checkpoint, ends, and is killed before its best model is renamed into place
    log = kill_at(config, run_dir, "atomic-directory:before-rename:stage1/best")
    assert f"resuming from {first}" in log and f"Removing incomplete checkpoint {second}" in log
    assert not (stage1 / "best").exists()
    [tmp_best] = stage1.glob(".best.tmp-*")
    assert (tmp_best / "model.safetensors").is_file()

    # 3. stage 1 ends (resumed from its last checkpoint); stage 2 is killed before its second checkpoint's
    #    trainer_state.json
    log = kill_at(config, run_dir, "checkpoint:before-trainer-state:stage2", hit=2)
    assert f"resuming from {checkpoints(stage1)[-1]}" in log
    assert (stage1 / "best" / "model.safetensors").is_file() and not list(stage1.glob(".*.tmp*"))
    assert not (stage2 / "best").exists()
    first, second = checkpoints(stage2)
    assert is_complete_checkpoint(first) and saved_files(first) == set(SAVED_IN_ORDER)
    assert saved_files(second) == set(INTERRUPTED_SAVES["no trainer_state.json"]["files"])

    # 4. stage 2 resumes from its first checkpoint and ends, both best models are scored; killed between writing
    #    metrics.json's content and renaming it into place
    log = kill_at(config, run_dir, "atomic-write:before-rename:fold1/metrics.json")
    assert f"resuming from {first}" in log and f"Removing incomplete checkpoint {second}" in log
    assert (stage2 / "best" / "model.safetensors").is_file() and (fold / "test_predictions.npz").is_file()
    assert not (fold / "metrics.json").exists() and not (run_dir / "results.json").exists()
    [tmp_metrics] = fold.glob(".metrics.json.*.tmp")
    json.loads(tmp_metrics.read_text())  # complete: the kill came after the write

    # 5. the same command once more: both stages skipped, the fold scored again, the run ends
    resumed = run_to_completion(config, run_dir)
    assert_close(numbers(resumed), numbers(reference))
    assert resumed["mean"] == pytest.approx(reference["mean"], abs=1e-6)
    for stage in ("stage1", "stage2"):
        assert_close(training_history(fold / stage), training_history(reference_dir / "fold1" / stage), stage)
    with np.load(fold / "test_predictions.npz") as got, np.load(reference_dir / "fold1/test_predictions.npz") as ref:
        np.testing.assert_allclose(got["embeddings"], ref["embeddings"], atol=1e-5)
    # every JSON file the run left is complete, and no temporary leftovers remain
    for path in run_dir.rglob("*.json"):
        json.loads(path.read_text())
    assert not [path for path in run_dir.rglob(".*.tmp*")]
