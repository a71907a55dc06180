"""Ctrl-C of a long-running command (`modeling.cli.interrupt`): two lines — what is saved and the command that
resumes — instead of a KeyboardInterrupt traceback, and exit code 130. The real thing: train.py interrupted by
SIGINT in stage 2, then the printed command again resumes and finishes."""

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO
from runs import write_config
from safetensors.torch import save_file

from modeling.cli.interrupt import INTERRUPTED_EXIT_CODE, exits_cleanly_on_interrupt, newest_checkpoint, run_dir_saved
from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV


SAVED = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")  # trainer_state.json last


def test_interrupt_prints_two_lines_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    for stage, step, files in (("stage1", 4, SAVED), ("stage2", 2, SAVED), ("stage2", 4, SAVED[:-1])):
        checkpoint = run_dir / "fold1" / stage / f"checkpoint-{step}"
        checkpoint.mkdir(parents=True)
        for name in files:
            (checkpoint / name).write_bytes(b"\0" * 64)
        save_file({"weight": torch.arange(4.0)}, checkpoint / "model.safetensors")
        if "trainer_state.json" in files:
            (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    os.utime(run_dir / "fold1" / "stage1" / "checkpoint-4", (1, 1))  # stage 2's complete one is the newest
    newest = run_dir / "fold1" / "stage2" / "checkpoint-2"  # checkpoint-4: interrupted save, not resumed from

    @exits_cleanly_on_interrupt("python train.py", lambda argv: f"the run directory {argv[1]} is kept")
    def main(argv=None):
        raise KeyboardInterrupt

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        try:
            code = main(["--output-dir", "runs/my run"])
        except KeyboardInterrupt:  # escaping, it would end the whole pytest session
            pytest.fail("the KeyboardInterrupt escaped main")
    assert code == INTERRUPTED_EXIT_CODE == 130
    assert stderr.getvalue() == (
        "Interrupted (Ctrl-C): the run directory runs/my run is kept.\n"
        "To resume, run the same command: python train.py --output-dir 'runs/my run'\n"
    )
    # train.py's own sentence names the run directory and its newest complete checkpoint
    assert run_dir_saved(run_dir) == (
        f"the run directory {run_dir} keeps every finished fold and stage (last checkpoint {newest})"
    )
    assert newest_checkpoint(run_dir) == newest
    assert newest_checkpoint(tmp_path / "absent") is None


@pytest.mark.parametrize("name", ["train", "predict", "score", "sweep", "timeline"])
def test_every_long_running_entry_point_goes_through_the_helper(name):
    import importlib

    main = importlib.import_module(f"modeling.cli.{name}").main
    assert main.__wrapped__ and main.__code__ is exits_cleanly_on_interrupt("", str)(lambda: 0).__code__


@pytest.mark.slow
# Two train.py processes (interrupted, then resumed to the end; about 40 CPU-s): in make test since CI took 7.5 min
@pytest.mark.bad_input
def test_ctrl_c_during_training_then_the_printed_command_resumes(tmp_path):
    config = write_config(
        tmp_path / "tiny.yaml", data={"max_per_speaker": 6}, stage1={"epochs": 1}, stage2={"epochs": 2}
    )
    run_dir, log = tmp_path / "run", tmp_path / "faults.log"
    command = [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"]
    clean = {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_LOG_ENV)}
    # Stage 2's third step (2 steps per epoch: its epoch-1 checkpoint is saved): frozen there (SIGSTOP) until the
    # test has sent SIGINT, so the interrupt lands mid-training whatever the machine's speed.
    env = {**clean, FAULT_ENV: "train:step:rank0:step3:stop", FAULT_LOG_ENV: str(log)}
    output = open(tmp_path / "out.txt", "w")  # a file: a full pipe would block the process
    # SIGINT as at a terminal: a job started in the background of a script inherits it ignored, and Python then
    # installs no KeyboardInterrupt handler
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen(
        command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env=env, preexec_fn=default_sigint
    )
    try:
        end = time.monotonic() + 600
        while not (log.exists() and log.read_text()) and time.monotonic() < end:
            assert process.poll() is None, (tmp_path / "out.txt").read_text()[-3000:]
            time.sleep(0.2)
        assert f"pid {process.pid})" in log.read_text()
        process.send_signal(signal.SIGINT)  # pending while stopped; delivered on SIGCONT, as a Ctrl-C mid-step
        process.send_signal(signal.SIGCONT)
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        output.close()
    text = (tmp_path / "out.txt").read_text()
    assert code == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    checkpoint = run_dir / "fold1" / "stage2" / "checkpoint-2"
    assert text.endswith(
        f"Interrupted (Ctrl-C): the run directory {run_dir} keeps every finished fold and stage "
        f"(last checkpoint {checkpoint}).\nTo resume, run the same command: {shlex.join(command)}\n"
    ), text[-1500:]
    # Nothing half-written: no temporary file of an atomic write, no lock left; stage 1's best model intact
    assert not [p for p in run_dir.rglob("*.tmp")] and not list(run_dir.rglob("*.lock"))
    assert not (run_dir / "results.json").exists() and (run_dir / "fold1" / "stage1" / "best").is_dir()
    stage1_best = (run_dir / "fold1" / "stage1" / "best" / "model.safetensors").stat().st_mtime_ns
    again = subprocess.run(
        shlex.split(text.rsplit(": ", 1)[1]), cwd=REPO, env=clean, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {checkpoint}" in again.stderr + again.stdout  # stage 2 goes on from its checkpoint
    assert (run_dir / "fold1" / "stage1" / "best" / "model.safetensors").stat().st_mtime_ns == stage1_best
    results = json.loads((run_dir / "results.json").read_text())
    assert results["folds_evaluated"] == [1]
