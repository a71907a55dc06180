"""Crash-safe writes: an interrupted save never leaves a half-written file or checkpoint behind."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modeling.rundir import atomic as io_utils
from modeling.rundir import faults as faults_module
from modeling.rundir.atomic import atomic_directory, atomic_write_json, cleanup_stale_tmp, read_json


def test_exception_inside_atomic_directory_keeps_the_previous_content(tmp_path):
    target = tmp_path / "best"
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "weights.bin").write_text("v2 half")
            raise RuntimeError("disk full")
    assert (target / "weights.bin").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]


def test_atomic_directory_replaces_an_existing_directory(tmp_path):
    target = tmp_path / "best"
    for version in ("v1", "v2"):
        with atomic_directory(target) as tmp:
            (tmp / "weights.bin").write_text(version)
    assert (target / "weights.bin").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_kill_9_during_writes_never_leaves_a_partial_file(tmp_path):
    """A writer rewrites a ~2 MB JSON file and a checkpoint folder in a loop; SIGKILL it at several moments."""
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(io_utils.__file__).parents[1])!r})  # the rundir room alone: no torch
        from rundir.atomic import atomic_directory, atomic_write_json
        folder = Path({str(tmp_path)!r})
        payload = list(range(300_000))
        i = 0
        while True:
            atomic_write_json(folder / "results.json", {{"round": i, "payload": payload}})
            with atomic_directory(folder / "best") as tmp:
                (tmp / "a.json").write_text(str(i))
                (tmp / "b.json").write_text(str(i))
            i += 1
            if i == 1:
                print("ready", flush=True)
        """
    )
    for delay in (0.05, 0.13, 0.31, 0.57):
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        results = read_json(tmp_path / "results.json")  # parses: never half-written
        assert results["payload"][-1] == 299_999
        if (tmp_path / "best").exists():  # may be absent only inside the two renames
            assert (tmp_path / "best" / "a.json").read_text() == (tmp_path / "best" / "b.json").read_text()
        cleanup_stale_tmp(tmp_path)
        assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_atomic_write_json_round_trip(tmp_path):
    atomic_write_json(tmp_path / "sub" / "r.json", {"ua": 0.5})
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"ua": 0.5}


def test_atomic_file_writes_bytes_and_keeps_the_old_file_on_an_exception(tmp_path):
    target = tmp_path / "arrays.npz"
    with io_utils.atomic_file(target, "wb") as f:
        f.write(b"v1")
    with pytest.raises(RuntimeError):
        with io_utils.atomic_file(target, "wb") as f:
            f.write(b"v2 half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"v1"
    assert [p.name for p in tmp_path.iterdir()] == ["arrays.npz"]


# ---------------------------------------------------------------------------------------------------------------
# Interrupted at a named point (faults_module.fault_point): no timing involved
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def faults(monkeypatch, tmp_path):
    """Set FRAME_ALIGNED_SER_FAULT for this process; returns the marker log (a file outside `tmp_path/data`)."""
    monkeypatch.setattr(faults_module, "_fault_hits", {})
    log = tmp_path / "faults.log"
    monkeypatch.setenv(faults_module.FAULT_LOG_ENV, str(log))

    def set_fault(spec: str) -> Path:
        monkeypatch.setenv(faults_module.FAULT_ENV, spec)
        return log

    return set_fault


def markers(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_fault_point_is_a_no_op_when_unset(monkeypatch):
    monkeypatch.delenv(faults_module.FAULT_ENV, raising=False)
    faults_module.fault_point("atomic-write:before-rename:x/y.json")


def test_fault_point_raises_at_the_nth_matching_hit_and_writes_its_marker(faults):
    log = faults("demo:step:raise@2")
    faults_module.fault_point("demo:step:a")  # hit 1
    faults_module.fault_point("demo:stepper")  # not a match: the name must be `demo:step` or `demo:step:...`
    faults_module.fault_point("other:step")
    assert markers(log) == []
    with pytest.raises(faults_module.FaultInjected, match="demo:step:b"):
        faults_module.fault_point("demo:step:b")  # hit 2
    faults_module.fault_point("demo:step:c")  # only the 2nd hit
    assert markers(log) == [f"fault point demo:step:b: raise (hit 2, pid {os.getpid()})"]


@pytest.mark.parametrize("spec", ["demo:explode", "kill", "demo:kill@x"])
def test_a_malformed_fault_is_an_error(faults, spec):
    faults(spec)
    with pytest.raises(ValueError):
        faults_module.fault_point("demo")


def test_atomic_write_interrupted_before_the_rename_keeps_the_previous_file(faults, tmp_path):
    folder = tmp_path / "data"
    atomic_write_json(folder / "results.json", {"round": 1})
    log = faults("atomic-write:before-rename:data/results.json:raise")
    with pytest.raises(faults_module.FaultInjected):
        atomic_write_json(folder / "results.json", {"round": 2, "payload": list(range(1000))})
    point = "atomic-write:before-rename:data/results.json"
    assert markers(log) == [f"fault point {point}: raise (hit 1, pid {os.getpid()})"]
    assert read_json(folder / "results.json") == {"round": 1}
    assert [p.name for p in folder.iterdir()] == ["results.json"]  # the temporary file is removed too


def test_atomic_directory_interrupted_before_the_rename_keeps_the_previous_directory(faults, tmp_path):
    folder = tmp_path / "data"
    with atomic_directory(folder / "best") as tmp:
        (tmp / "weights.bin").write_text("v1")
    log = faults("atomic-directory:before-rename:data/best:raise")
    with pytest.raises(faults_module.FaultInjected):
        with atomic_directory(folder / "best") as tmp:
            (tmp / "weights.bin").write_text("v2")
    assert len(markers(log)) == 1
    assert (folder / "best" / "weights.bin").read_text() == "v1"
    assert [p.name for p in folder.iterdir()] == ["best"]


def kill_writer(tmp_path: Path, point: str, code: str) -> list[str]:
    """Run `code` (with the atomic writers imported) in a subprocess whose fault `point` is a SIGKILL; assert it was
    killed
    there; returns the files left in tmp_path/data."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(io_utils.__file__).parents[1])!r})  # the rundir room alone: no torch
        from rundir.atomic import atomic_directory, atomic_write_json
        """
    )
    log = tmp_path / "faults.log"
    log.unlink(missing_ok=True)
    env = {**os.environ, faults_module.FAULT_ENV: f"{point}:kill", faults_module.FAULT_LOG_ENV: str(log)}
    process = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert [line.split(" (hit")[0] for line in markers(log)] == [f"fault point {point}: kill"]
    return sorted(p.name for p in (tmp_path / "data").iterdir())


def test_kill_9_between_write_and_rename_keeps_the_previous_file(tmp_path):
    folder = tmp_path / "data"
    atomic_write_json(folder / "results.json", {"round": 1})
    left = kill_writer(
        tmp_path,
        "atomic-write:before-rename:data/results.json",
        'atomic_write_json("data/results.json", {"round": 2, "payload": list(range(300_000))})',
    )
    assert read_json(folder / "results.json") == {"round": 1}
    # the kill came after the whole new text was written: it is complete in the temporary file
    [leftover] = [name for name in left if name != "results.json"]
    assert leftover.startswith(".results.json.") and leftover.endswith(".tmp")
    assert read_json(folder / leftover)["payload"][-1] == 299_999
    cleanup_stale_tmp(folder)
    assert [p.name for p in folder.iterdir()] == ["results.json"]
    assert read_json(folder / "results.json") == {"round": 1}


@pytest.mark.parametrize("point", ["before-rename", "between-renames"])
def test_kill_9_inside_atomic_directory_keeps_the_previous_directory_after_cleanup(tmp_path, point):
    folder = tmp_path / "data"
    with atomic_directory(folder / "best") as tmp:
        (tmp / "a.json").write_text("v1")
        (tmp / "b.json").write_text("v1")
    code = """
        with atomic_directory("data/best") as tmp:
            (tmp / "a.json").write_text("v2")
            (tmp / "b.json").write_text("v2")
    """
    left = kill_writer(tmp_path, f"atomic-directory:{point}:data/best", code)
    if point == "before-rename":
        assert (folder / "best" / "a.json").read_text() == "v1"
    else:  # the old directory was moved aside, the new one not renamed yet: `best` is absent for now
        assert "best" not in left and any(name.startswith(".best.old-") for name in left)
    assert any(name.startswith(".best.tmp-") for name in left)
    cleanup_stale_tmp(folder)
    assert [p.name for p in folder.iterdir()] == ["best"]
    assert (folder / "best" / "a.json").read_text() == (folder / "best" / "b.json").read_text() == "v1"


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask_like_any_other_file(tmp_path, umask):
    """Issue 19: every file of the atomic writer was 0600 (`best/` 0700) whatever the umask, so results and
    checkpoints were unreadable to a colleague sharing the cluster while `config.json` beside them was 0644."""
    previous = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "results.json", {"ua": 0.5})
        with io_utils.atomic_file(tmp_path / "model.safetensors", "wb") as f:
            f.write(b"weights")
        with atomic_directory(tmp_path / "best") as tmp:
            (tmp / "config.json").write_text("{}")
            # transformers 5.24's save_pretrained writes model.safetensors 0600 whatever the umask (re-run of issue 19)
            weights = tmp / "model.safetensors"
            weights.write_bytes(b"weights")
            os.chmod(weights, 0o600)
            (tmp / "sub").mkdir(mode=0o700)
        (tmp_path / "plain.txt").write_text("written by open()")
        os.mkdir(tmp_path / "plain_dir")
    finally:
        os.umask(previous)
    mode = lambda name: (tmp_path / name).stat().st_mode & 0o777  # noqa: E731
    assert mode("plain.txt") == 0o666 & ~umask and mode("plain_dir") == 0o777 & ~umask
    assert mode("results.json") == mode("model.safetensors") == mode("plain.txt")
    assert mode("best") == mode("plain_dir")
    assert mode("best/config.json") == mode("best/model.safetensors") == mode("plain.txt")
    assert mode("best/sub") == mode("plain_dir")
