"""One process per fold: a second `train.py` on the same fold refuses, naming the first; a killed holder's lock is
taken over; other folds train in parallel and `results.json` ends with every finished fold."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import REPO
from runs import write_config

from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV
from modeling.rundir.locks import FileLock, LockHeldError


pytestmark = pytest.mark.bad_input


def test_a_live_holder_is_refused_and_named(tmp_path):
    path = tmp_path / "fold1" / "train.lock"
    with FileLock(path, "fold1"):
        holder = json.loads(path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(
            LockHeldError,
            match=rf"^fold1 is being trained by process {os.getpid()} on host "
            rf"{socket.gethostname()} \(.*\) \(lock {path}\)\. Wait for it",
        ):
            FileLock(path, "fold1").acquire()
    assert not path.exists()  # released


def test_a_dead_holder_is_taken_over(tmp_path, caplog):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    path = tmp_path / "train.lock"
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "1", "command": "train.py"}))
    with FileLock(path, "fold2") as lock:
        assert json.loads(path.read_text())["pid"] == os.getpid() and lock.held
    assert f"fold2: taking over the stale lock {path} of process {pid} on host" in caplog.text


def test_a_reused_process_id_is_not_the_holder(tmp_path):
    """The holder's pid now belongs to another process (here: this one, with another start time): stale."""
    path = tmp_path / "train.lock"
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "0", "command": "x"}))
    with FileLock(path, "fold1"):
        assert json.loads(path.read_text())["started"] != "0"


def test_a_holder_on_another_host_is_refused_with_the_file_to_delete(tmp_path):
    path = tmp_path / "train.lock"
    path.write_text(json.dumps({"pid": 1, "host": "node-17", "started": "5", "command": "train.py --folds 1"}))
    with pytest.raises(
        LockHeldError, match=rf"process 1 on host node-17 .* if it is no longer running, delete {path}"
    ):
        FileLock(path, "fold1").acquire()
    assert json.loads(path.read_text())["host"] == "node-17"  # untouched


def command(config, run_dir, folds) -> list[str]:
    return [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", folds]


def clean_environment() -> dict:
    return {k: v for k, v in os.environ.items() if k not in (FAULT_ENV, FAULT_LOG_ENV)}


def train(config, run_dir, folds) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(config, run_dir, folds), cwd=REPO, env=clean_environment(), capture_output=True, text=True, timeout=300
    )


def wait_for_marker(log, process, deadline_s=180):
    """Until the process reaches its fault point (the marker in the log) — an event, bounded, not a sleep."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if log.exists() and log.read_text():
            return log.read_text()
        assert process.poll() is None, f"the holder ended with code {process.returncode}"
        time.sleep(0.2)
    process.kill()
    pytest.fail("the holder never reached lock:acquired:fold1")


@pytest.mark.slow
# heavy: three train.py processes around one lock (66 s)
@pytest.mark.heavy
def test_same_fold_refused_other_fold_runs_then_stale_lock_taken_over(tmp_path):
    config = write_config(
        tmp_path / "tiny.yaml", data={"max_per_speaker": 6}, stage1={"epochs": 1}, stage2={"epochs": 1}
    )
    run_dir, log = tmp_path / "run", tmp_path / "faults.log"
    # A: holds fold 1's lock and is frozen there (SIGSTOP at the fault point: alive, holding it)
    holder_log = open(tmp_path / "holder.txt", "w")  # a file: a full pipe would block the holder
    holder = subprocess.Popen(
        command(config, run_dir, "1"),
        cwd=REPO,
        stdout=holder_log,
        stderr=subprocess.STDOUT,
        env={**clean_environment(), FAULT_ENV: "lock:acquired:fold1:stop", FAULT_LOG_ENV: str(log)},
    )
    try:
        marker = wait_for_marker(log, holder)
        assert f"pid {holder.pid})" in marker
        # B: the same fold → refuses at once, naming A
        second = train(config, run_dir, "1")
        assert second.returncode != 0
        assert f"error: fold1 is being trained by process {holder.pid} on host {socket.gethostname()}" in second.stderr
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert not (run_dir / "fold1" / "stage1").exists()
        # C: another fold of the same run directory trains meanwhile
        other = train(config, run_dir, "2")
        assert other.returncode == 0, other.stderr[-3000:]
        assert json.loads((run_dir / "results.json").read_text())["folds_evaluated"] == [2]
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9 of the holder (stopped: it never resumes)
        holder.wait(timeout=60)
        holder_log.close()
    assert json.loads((run_dir / "fold1" / "train.lock").read_text())["pid"] == holder.pid  # left behind
    # D: the same command again takes the stale lock over and finishes; results.json has both folds
    rerun = train(config, run_dir, "1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"taking over the stale lock {run_dir / 'fold1' / 'train.lock'} of process {holder.pid}" in rerun.stderr
    assert json.loads((run_dir / "results.json").read_text())["folds_evaluated"] == [1, 2]
    assert not (run_dir / "fold1" / "train.lock").exists() and not (run_dir / "run.lock").exists()
