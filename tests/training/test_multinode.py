"""Training across nodes (docs/scaling.md): `train.py` under two `torchrun --nnodes 2 --nproc-per-node 1
--rdzv-backend c10d` launchers (on this machine, as two nodes would run them, one output folder as on a shared file
system) ends with the same weights as the single-node 2-process run; accelerate's `--cpu` launcher runs one process
whatever `--num_processes` says, `--multi_gpu` on a machine without GPUs runs the asked two (over gloo)."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, markdown_blocks
from runs import write_config
from safetensors.torch import load_file
from test_distributed import BATCH_SIZE, TIMEOUT_S, TRAIN_EXAMPLES, run_bounded

from modeling.training.checkpoints import latest_checkpoint


STAGES = {"epochs": 1, "batch_size": BATCH_SIZE}
SCALING_PAGE = REPO / "docs" / "scaling.md"
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


def documented_command(start: str) -> list[str]:
    """The one line of docs/scaling.md's ```bash blocks that starts with `start`, split as bash would."""
    lines = [line for block in markdown_blocks(SCALING_PAGE, "bash") for line in block.splitlines()]
    [line] = [line for line in lines if line.startswith(start)]
    return shlex.split(line)


def two_node_run(config: str, run_dir: Path, tmp_path: Path) -> list[tuple[int, str, str]]:
    """docs/scaling.md's two-node command, launched twice as on two nodes (same rendezvous endpoint and id, one
    process each), with this test's endpoint, tiny config and run folder."""
    documented = documented_command("torchrun --nnodes 2")
    script = documented.index("train.py")
    launcher = documented[1:script]
    assert launcher[launcher.index("--rdzv-endpoint") + 1] == "$HEAD:29500"
    launcher[launcher.index("--rdzv-endpoint") + 1] = f"127.0.0.1:{free_port()}"
    launchers = []
    for node in range(2):
        command = [sys.executable, "-m", "torch.distributed.run", *launcher]
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
@pytest.mark.heavy  # four torchrun processes on 2 cores (minutes); make test-all
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
@pytest.mark.heavy  # accelerate launches of train.py (minutes on 2 cores); make test-all
@pytest.mark.parametrize("mode", ["--cpu", "--multi_gpu"])
def test_accelerate_launch_cpu_runs_one_process_multi_gpu_without_gpus_runs_two(single_node, tmp_path, mode):
    """docs/scaling.md's claim: `accelerate launch --cpu --num_processes 2` starts ONE process (its simple launcher;
    two need `--mpirun_hostfile` and an MPI), so an epoch takes all 4 steps; `--multi_gpu --num_processes 2` with no
    GPU visible starts two through torchrun, which train exactly as `torchrun --nproc_per_node 2`."""
    config, single = single_node
    run_dir = tmp_path / "run"
    documented = documented_command("CUDA_VISIBLE_DEVICES= accelerate launch")  # CPU_ENV hides the GPUs here
    launcher = [mode if arg == "--multi_gpu" else arg for arg in documented[3 : documented.index("train.py")]]
    command = [sys.executable, "-m", "accelerate.commands.launch", *launcher]
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


# ---------------------------------------------------------------------------------------------------------------
# docs/scaling.md: the Slurm scripts, run under bash with the cluster's commands replaced by recorders
# ---------------------------------------------------------------------------------------------------------------

RECORDER = """#!{python}
import json, os, subprocess, sys
name = os.path.basename(sys.argv[0])
if name == "srun":  # srun [--nodes=1 --ntasks=1 -w NODE] COMMAND...: run COMMAND (here: its recorder)
    args = sys.argv[1:]
    while args and args[0].startswith("-"):
        args = args[2:] if args[0] == "-w" else args[1:]
    sys.exit(subprocess.call(args) if args else 0)
if name == "scontrol":
    print(" ".join(f"node{{k}}" for k in range(1, int(os.environ["SLURM_NNODES"]) + 1)))
elif name == "hostname":
    print("10.0.0.1")
elif name != "sleep":
    with open(os.environ["RECORDED_CALLS"], "a") as f:
        f.write(json.dumps(sys.argv[1:] and [name] + sys.argv[1:]) + "\\n")
"""
SLURM_ENV = {
    "SLURM_JOB_NODELIST": "node[1-N]",
    "SLURM_JOB_ID": "4242",
    "SLURM_CPUS_PER_TASK": "32",
    "SLURM_ARRAY_TASK_ID": "3",
}


def run_recorded(script: str, tmp_path: Path) -> list[list[str]]:
    """Run `script` with srun, scontrol, hostname, sleep, python, torchrun and ray replaced: the calls it made."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("srun", "scontrol", "hostname", "sleep", "python", "torchrun", "ray"):
        (bin_dir / name).write_text(RECORDER.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, **SLURM_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RECORDED_CALLS": str(calls)}
    nodes = re.search(r"^#SBATCH --nodes=(\d+)$", script, flags=re.M)
    env["SLURM_NNODES"] = nodes.group(1) if nodes else "1"
    process = subprocess.run(["bash", "-c", script + "\nwait\n"], env=env, capture_output=True, text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


def check_train_args(argv: list[str]):
    """`train.py`'s arguments parse and name a config that resolves (offline: without the backbone's Hub config)."""
    from modeling.cli.train import parse_args
    from modeling.training.run_config import resolve_config

    args = parse_args(argv)
    config = resolve_config(REPO / args.config, args.overrides, args.data_dir)
    assert args.data_dir is None or config["data"]["root"] == args.data_dir
    return args


def slurm_scripts() -> list[str]:
    return [block for block in markdown_blocks(SCALING_PAGE, "bash") if block.startswith("#!/bin/bash")]


def test_scaling_page_has_three_slurm_scripts_that_bash_parses():
    scripts = slurm_scripts()
    assert len(scripts) == 3
    for script in scripts:
        assert subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True).returncode == 0, script


def test_slurm_fold_array_trains_one_fold_per_task(tmp_path):
    script = next(s for s in slurm_scripts() if "--array=" in s)
    assert "#SBATCH --array=1-5" in script  # IEMOCAP: 5 sessions, leave-one-session-out = 5 folds
    [call] = run_recorded(script, tmp_path)
    assert call[:2] == ["python", "train.py"]
    args = check_train_args(call[2:])
    assert args.folds == SLURM_ENV["SLURM_ARRAY_TASK_ID"] and args.output_dir == "runs/iemocap"


def test_slurm_multi_node_job_starts_one_torchrun_per_node_with_valid_arguments(tmp_path):
    from torch.distributed.run import get_args_parser

    script = next(s for s in slurm_scripts() if "torchrun" in s)
    [call] = run_recorded(script, tmp_path)
    args = get_args_parser().parse_args(call[1:])
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("2", "4", "c10d")
    assert (args.rdzv_endpoint, args.rdzv_id) == ("node1:29500", "4242")
    assert args.training_script == "train.py"
    check_train_args(args.training_script_args)


def test_slurm_ray_job_starts_a_head_workers_and_the_driver(tmp_path):
    from ray.scripts.scripts import start

    from modeling.cli.predict import parse_args

    script = next(s for s in slurm_scripts() if "--engine ray" in s)
    calls = run_recorded(script, tmp_path)
    starts = [call for call in calls if call[:2] == ["ray", "start"]]
    assert len(starts) == 4  # the head and a worker on each of the 3 other nodes
    options = [start.make_context("start", call[2:]).params for call in starts]
    assert sorted(o["head"] for o in options) == [False, False, False, True]  # (started in the background)
    assert all(o["address"] == "10.0.0.1:6379" for o in options if not o["head"]) and all(o["block"] for o in options)
    [driver] = [call for call in calls if call[0] == "python"]
    args = parse_args(driver[2:])
    assert (driver[1], args.engine, args.address, args.backend) == ("predict.py", "ray", "10.0.0.1:6379", "onnx-int8")
    assert args.actors == 4 * 32  # every CPU of the 4 nodes: the pool does not depend on who joined first


def test_accelerate_command_of_the_page_is_the_one_tested():
    from accelerate.commands.launch import launch_command_parser

    documented = documented_command("CUDA_VISIBLE_DEVICES= accelerate launch")
    args = launch_command_parser().parse_args(documented[3:])
    assert (args.multi_gpu, args.num_processes, args.num_machines, args.cpu) == (True, 2, 1, False)
    check_train_args(args.training_script_args) if args.training_script == "train.py" else pytest.fail(documented)
