"""`torchrun` on the CPU (README): `train.py` with 2 processes over gloo really trains data-parallel, the loss terms
logged by `FrameAlignedTrainer` are means over both processes, and only the main process writes and prints results.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modeling.training.checkpoints import latest_checkpoint

from helpers import REPO
from test_training import write_config


NUM_PROCESSES = 2
BATCH_SIZE = 3  # per device
TRAIN_EXAMPLES = 12  # fold 1 trains on m3 only, max_per_speaker=12
TIMEOUT_S = 240  # ~40 s on 2 shared cores


def run_bounded(command: list[str], log_dir: Path, env: dict) -> tuple[int, str, str]:
    """Run `command` with stdout/stderr in files (the workers inherit them; a pipe would block on orphans) and at most
    TIMEOUT_S seconds. On timeout, SIGTERM lets torchrun stop its workers (each in its own session), then SIGKILL."""
    stdout, stderr = log_dir / "stdout.txt", log_dir / "stderr.txt"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            pytest.fail(f"torchrun did not finish in {TIMEOUT_S} s:\n{stderr.read_text()[-3000:]}")
    return returncode, stdout.read_text(), stderr.read_text()


def assert_logged_loss_is_the_weighted_sum_of_the_terms(log_history: list[dict], eal_weight: float, fual_weight: float):
    """The Trainer's `loss` is the mean over processes of the loss; the terms are reduced by
    `FrameAlignedTrainer._mean_over_processes` (only with world size > 1). Both must describe the same steps."""
    checked = 0
    for log in log_history:
        for prefix in ("", "eval_"):
            if f"{prefix}loss" in log and f"{prefix}loss_ce" in log:
                expected = (
                    log[f"{prefix}loss_ce"]
                    + eal_weight * log[f"{prefix}loss_eal"]
                    + fual_weight * log[f"{prefix}loss_fual"]
                )
                assert log[f"{prefix}loss"] == pytest.approx(expected, abs=2e-6), log  # terms are logged to 6 decimals
                checked += 1
    return checked


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_data_parallel(tmp_path):
    stages = {"epochs": 1, "batch_size": BATCH_SIZE}
    config = write_config(tmp_path / "ddp.yaml", stage1=stages, stage2=stages)
    run_dir = tmp_path / "run"
    # CPU only (gloo) even where a GPU is visible; --standalone picks a free port (tests may run side by side).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    returncode, stdout, stderr = run_bounded(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(NUM_PROCESSES),
         "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"],
        tmp_path,
        env,
    )
    assert returncode == 0, stderr[-3000:]
    assert stdout.count("Per-fold test UA/WA (%)") == 1 and stdout.count("| fold1 | m1 |") == 1  # main process only

    results = json.loads((run_dir / "results.json").read_text())
    fold = results["folds"]["1"]
    assert fold["num_examples"] == {"train": TRAIN_EXAMPLES, "validation": 12, "test": 12}
    assert np.array(fold["test"]["confusion_matrix"]).sum() == 12  # every test clip scored once, none twice
    assert (run_dir / fold["checkpoint"] / "model.safetensors").is_file()

    # Really distributed: each process takes every other batch of 3, so an epoch is 12 / (3 · 2) = 2 optimizer
    # steps (a single process makes 4 with the same per-device batch size).
    steps_per_epoch = TRAIN_EXAMPLES // (BATCH_SIZE * NUM_PROCESSES)
    assert steps_per_epoch == 2
    for stage in ("stage1", "stage2"):
        checkpoint = latest_checkpoint(run_dir / "fold1" / stage, remove_incomplete=False)
        assert checkpoint.endswith(f"checkpoint-{steps_per_epoch}"), checkpoint
        state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
        assert state["global_step"] == state["max_steps"] == steps_per_epoch
        assert state["train_batch_size"] == BATCH_SIZE
        saved = json.loads((run_dir / "fold1" / stage / "best" / "config.json").read_text())
        logs = state["log_history"]
        if stage == "stage2":  # cls_attention: the auxiliary terms are part of the loss
            assert saved["eal_weight"] > 0 and saved["fual_weight"] > 0
            assert all(log["loss_eal"] > 0 and log["loss_fual"] > 0 for log in logs if "loss_eal" in log)
        checked = assert_logged_loss_is_the_weighted_sum_of_the_terms(logs, saved["eal_weight"], saved["fual_weight"])
        assert checked == steps_per_epoch + 1  # one train log per step, one evaluation
