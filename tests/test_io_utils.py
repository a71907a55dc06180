"""Crash-safe writes: an interrupted save never leaves a half-written file or checkpoint behind."""

import json
import signal
import subprocess
import sys
import textwrap
import time

from pathlib import Path

import pytest

from modeling.training import io_utils
from modeling.training.io_utils import atomic_directory, atomic_write_json, cleanup_stale_tmp, read_json


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
        sys.path.insert(0, {str(Path(io_utils.__file__).parent)!r})  # io_utils alone: skip importing transformers
        from io_utils import atomic_directory, atomic_write_json
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
