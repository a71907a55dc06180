"""Training across nodes (docs/scaling.md): `train.py` under two `torchrun --nnodes 2 --nproc-per-node 1
--rdzv-backend c10d` launchers (on this machine, as two nodes would run them, one output folder as on a shared file
system) ends with the same weights as the single-node 2-process run; accelerate's `--cpu` launcher runs one process
whatever `--num_processes` says, `--multi_gpu` on a machine without GPUs runs the asked two (over gloo)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO
from runs import write_config
from safetensors.torch import load_file
from test_distributed import BATCH_SIZE, TIMEOUT_S, TRAIN_EXAMPLES, run_bounded

from modeling.training.checkpoints import latest_checkpoint


STAGES = {"epochs": 1, "batch_size": BATCH_SIZE}
CPU_ENV = {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(config: str, run_dir: Path) -> list[str]:
    return ["train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"]


def weights(run_dir: Path, stage: str) -> dict:
    return load_file(run_dir / "fold1" / stage / "best" / "model.safetensors")


def steps_per_epoch(run_dir: Path) -> int:
    checkpoint = latest_checkpoint(run_dir / "fold1" / "stage1", remove_incomplete=False)
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"]


def two_node_run(config: str, run_dir: Path, tmp_path: Path) -> list[tuple[int, str, str]]:
    """Two launchers, as `srun` would start one per node: same rendezvous endpoint and id, one process each."""
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = []
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
        command += ["--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "issue27"]
        logs = [open(tmp_path / f"node{node}.{name}.txt", "w") for name in ("stdout", "stderr")]
        env = {**os.environ, **CPU_ENV}
        process = subprocess.Popen(
            command + train_args(config, run_dir),
            cwd=REPO,
            env=env,
            stdout=logs[0],
            stderr=logs[1],
            start_new_session=True,
        )
        launchers.append((process, logs))
    outcomes = []
    for process, logs in launchers:
        try:
            returncode = process.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other, _ in launchers:
                os.killpg(other.pid, signal.SIGKILL)
            pytest.fail(f"the two-node run did not finish in {TIMEOUT_S} s")
        for log in logs:
            log.close()
        outcomes.append((returncode, *(Path(log.name).read_text() for log in logs)))
    return outcomes


@pytest.fixture(scope="module")
def single_node(tmp_path_factory):
    """The reference: `torchrun --standalone --nproc_per_node 2 train.py ...` (README), and its config."""
    tmp_path = tmp_path_factory.mktemp("single")
    config = write_config(tmp_path / "ddp.yaml", stage1=STAGES, stage2=STAGES)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    returncode, _, stderr = run_bounded(
        command + train_args(config, tmp_path / "run"), tmp_path, {**os.environ, **CPU_ENV}
    )
    assert returncode == 0, stderr[-3000:]
    assert steps_per_epoch(tmp_path / "run") == TRAIN_EXAMPLES // (BATCH_SIZE * 2)  # data-parallel: half the steps
    return config, tmp_path / "run"


def assert_same_run(got: Path, expected: Path):
    for stage in ("stage1", "stage2"):
        reference, weights_got = weights(expected, stage), weights(got, stage)
        assert sorted(weights_got) == sorted(reference)
        for name, tensor in reference.items():
            assert torch.equal(weights_got[name], tensor), (stage, name)
    results = [json.loads((run / "results.json").read_text())["folds"]["1"]["test"] for run in (got, expected)]
    assert results[0] == results[1]


@pytest.mark.slow
def test_two_torchrun_nodes_train_the_same_weights_as_one_node_with_two_processes(single_node, tmp_path):
    config, single = single_node
    multi = tmp_path / "multi"
    outcomes = two_node_run(config, multi, tmp_path)
    for returncode, _, stderr in outcomes:
        assert returncode == 0, stderr[-3000:]
    stdouts = "".join(stdout for _, stdout, _ in outcomes)
    assert stdouts.count("Per-fold test UA/WA (%)") == 1  # one main process over both nodes prints the results
    assert steps_per_epoch(multi) == steps_per_epoch(single)
    assert_same_run(multi, single)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--cpu", "--multi_gpu"])
def test_accelerate_launch_cpu_runs_one_process_multi_gpu_without_gpus_runs_two(single_node, tmp_path, mode):
    """docs/scaling.md's claim: `accelerate launch --cpu --num_processes 2` starts ONE process (its simple launcher;
    two need `--mpirun_hostfile` and an MPI), so an epoch takes all 4 steps; `--multi_gpu --num_processes 2` with no
    GPU visible starts two through torchrun, which train exactly as `torchrun --nproc_per_node 2`."""
    config, single = single_node
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "accelerate.commands.launch", mode, "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if mode == "--multi_gpu":
        command += ["--main_process_port", str(free_port())]
    returncode, stdout, stderr = run_bounded(
        command + train_args(config, run_dir), tmp_path, {**os.environ, **CPU_ENV}
    )
    assert returncode == 0, stderr[-3000:]
    assert stdout.count("Per-fold test UA/WA (%)") == 1
    if mode == "--cpu":
        assert steps_per_epoch(run_dir) == TRAIN_EXAMPLES // BATCH_SIZE == 4  # one process: not data-parallel
    else:
        assert_same_run(run_dir, single)
