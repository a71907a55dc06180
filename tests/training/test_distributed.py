"""`torchrun` on the CPU (README): `train.py` with 2 processes over gloo really trains data-parallel, the loss terms
logged by `FrameAlignedTrainer` are means over both processes, and only the main process writes and prints results.
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO
from runs import write_config

from modeling.training.checkpoints import latest_checkpoint


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


def assert_logged_loss_is_the_weighted_sum_of_the_terms(
    log_history: list[dict], eal_weight: float, fual_weight: float
):
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
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(NUM_PROCESSES),
            "train.py",
            "--config",
            config,
            "--output-dir",
            str(run_dir),
            "--folds",
            "1",
        ],
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


# ---------------------------------------------------------------------------------------------------------------
# DDP × activation checkpointing × LayerDrop × num_trainable_layers × frozen-prefix cache; a failing rank
# ---------------------------------------------------------------------------------------------------------------

COMBOS_SCRIPT = "tests/training/ddp_combos.py"


def torchrun(script_args: list[str], tmp_path: Path, **env) -> tuple[int, str, str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(NUM_PROCESSES)]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **env}
    return run_bounded(command + script_args, tmp_path, environment)


@pytest.mark.slow
# heavy: every DDP combination in gloo (52 s); make test keeps the real torchrun run
@pytest.mark.heavy
def test_ddp_every_combination_ends_with_the_same_weights_on_both_ranks(tmp_path):
    """One torchrun, 12 stage-2 trainings (3 steps each) through `train_stage`. Without `stage.ddp_settings`, the
    LayerDrop combinations fail with the issue's "Expected to have finished reduction in the prior iteration"."""
    from ddp_combos import combos

    out = tmp_path / "combos"
    returncode, stdout, stderr = torchrun([COMBOS_SCRIPT, str(out)], tmp_path)
    assert returncode == 0, stderr[-3000:]
    names = list(combos())
    assert len(names) == 12
    hashes = {}
    for name in names:
        ranks = [json.loads((out / f"{name}.rank{r}.json").read_text()) for r in range(NUM_PROCESSES)]
        assert ranks[0]["sha256"] == ranks[1]["sha256"], name  # all-reduced gradients: identical weights
        assert all(r["world_size"] == NUM_PROCESSES and r["steps"] == 3 for r in ranks), name
        layerdrop = "-ld0.5-" in name
        assert all(r["find_unused_parameters"] == layerdrop for r in ranks), name
        assert all(r["activation_checkpointing"] == name.startswith("ckpt1") for r in ranks), name
        if layerdrop and name.endswith("cache0"):  # each process drew its own layers to skip (2 layers × 3 steps)
            assert sorted(r["layers_run"] for r in ranks) != [6, 6], name
        hashes[name] = ranks[0]["sha256"]
    # activation checkpointing recomputes, it does not change the result
    for name in names:
        if name.startswith("ckpt0") and "-ld0.0-" in name:
            assert hashes[name] == hashes["ckpt1" + name[5:]], name
    assert len({hashes[name] for name in names if name.startswith("ckpt0")}) == 6  # every setting trains differently


@pytest.mark.slow
# heavy: two ranks, one raising (25 s)
@pytest.mark.heavy
@pytest.mark.bad_input
def test_a_rank_that_raises_stops_both_ranks_without_a_hang(tmp_path):
    """Rank 1 raises in its second step while rank 0 waits for its gradients: torchrun's agent stops rank 0 too,
    and the job exits non-zero well within the timeout, the failing rank's error in the log."""
    returncode, stdout, stderr = torchrun(
        [COMBOS_SCRIPT, str(tmp_path / "combos"), "ckpt1-ld0.5-trainall-cache0"],
        tmp_path,
        FRAME_ALIGNED_SER_FAULT="train:step:rank1:step2:raise",
    )
    assert returncode != 0
    assert "FaultInjected: fault point train:step:rank1:step2: raise" in stderr
    exit_codes = dict(re.findall(r"rank\s+: (\d) \(local_rank: \d\)\s+exitcode\s+: (-?\d+)", stderr))
    assert exit_codes.get("1") == "1" and exit_codes.get("0") not in (None, "0"), stderr[-3000:]
    assert not (tmp_path / "combos" / "ckpt1-ld0.5-trainall-cache0.rank0.json").exists()
