"""Crash-safe writes: a reader never sees a half-written results file or checkpoint directory.

Also `fault_point`, the test-only fault injection the crash tests use to stop a process at a named moment.
"""

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path


FAULT_ENV = "FRAME_ALIGNED_SER_FAULT"
FAULT_LOG_ENV = "FRAME_ALIGNED_SER_FAULT_LOG"
_fault_hits: dict[str, int] = {}


class FaultInjected(RuntimeError):
    """Raised by `fault_point` for a `:raise` fault."""


def fault_point(name: str) -> None:
    """A named moment at which a crash test can kill or interrupt this process (a no-op in normal runs).

    Test-only. Unless the environment variable FRAME_ALIGNED_SER_FAULT is set this is one dictionary lookup.
    `FRAME_ALIGNED_SER_FAULT="<point>:<action>[@N]"` (several separated by commas): the N-th time (default: the
    first) this process reaches a point named `<point>`, or `<point>:...`, write the marker line
    `fault point <name>: <action> (hit N, pid P)` to stderr and, when FRAME_ALIGNED_SER_FAULT_LOG names a file,
    append it there; then `kill` sends SIGKILL to the process itself (as `kill -9` would: nothing runs after it),
    `raise` raises `FaultInjected`.

    The points (the last `:` part locates them, so `checkpoint:before-trainer-state` matches both stages and
    `checkpoint:before-trainer-state:stage2` only stage 2; `<location>` is `<parent folder>/<name>`):
        atomic-write:before-rename:<location>        `atomic_write_text`, e.g. `...:fold1/metrics.json`: the new
                                                     text is complete and fsynced in the temporary file, the
                                                     target not replaced yet.
        atomic-directory:before-rename:<location>    `atomic_directory`, e.g. `...:stage1/best`: the new content is
                                                     complete in the temporary directory, the target not replaced.
        atomic-directory:between-renames:<location>  `atomic_directory` over an existing directory: the old one
                                                     moved aside, the new one not in place yet (target absent).
        checkpoint:before-optimizer:<stage>          a Trainer checkpoint folder with model.safetensors (and the
                                                     config) but not yet optimizer.pt, scheduler.pt, rng_state.pth,
                                                     trainer_state.json (`training.StageTrainer`; the
                                                     `cache_frozen_prefix` trainer has no checkpoint points).
        checkpoint:before-trainer-state:<stage>      a Trainer checkpoint folder with everything but
                                                     trainer_state.json (written last).
        best:written:<stage>                         `fold<k>/<stage>/best` is in place (`training.train_stage`).
        scoring:after-predictions:fold<k>            both best models scored, test_predictions.npz written,
                                                     metrics.json not yet (`training.fold_metrics`).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for fault in spec.split(","):
        point, _, action = fault.strip().rpartition(":")
        action, _, count = action.partition("@")
        if action not in ("kill", "raise") or not point:
            raise ValueError(f"{FAULT_ENV}={spec!r}: expected <point>:kill or <point>:raise, optionally @N")
        if name != point and not name.startswith(point + ":"):
            continue
        hits = _fault_hits[fault] = _fault_hits.get(fault, 0) + 1
        if hits != int(count or 1):
            continue
        marker = f"fault point {name}: {action} (hit {hits}, pid {os.getpid()})\n"
        print(marker, end="", file=sys.stderr, flush=True)
        if os.environ.get(FAULT_LOG_ENV):
            fd = os.open(os.environ[FAULT_LOG_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, marker.encode())
            finally:
                os.close(fd)
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise FaultInjected(marker.strip())


def _location(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    On an exception `path` keeps its previous content and the temporary file is removed; after a kill it is left
    as `.name.*.tmp`, which `cleanup_stale_tmp` deletes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        prefix = f".{path.name}."
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=prefix, suffix=".tmp", delete=False) as f:
            tmp = f.name
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"atomic-write:before-rename:{_location(path)}")
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a temporary directory next to `path`; on success it replaces `path` in one rename.

    On an exception `path` keeps its previous content (or stays absent) and the temporary directory is removed.
    After a kill, leftovers are `.name.tmp-*` (deleted by `cleanup_stale_tmp`) and, if the kill came between moving
    the previous `path` aside and renaming the new one into place, `.name.old-*` (put back by `cleanup_stale_tmp`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        fault_point(f"atomic-directory:before-rename:{_location(path)}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        fault_point(f"atomic-directory:between-renames:{_location(path)}")
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def cleanup_stale_tmp(folder: str | os.PathLike) -> None:
    """Remove leftovers of interrupted atomic writes in `folder`.

    A directory that an interrupted `atomic_directory` had moved aside (`.name.old-*`) is put back if `name` is
    missing (the kill came before the new one was renamed into place), deleted otherwise.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return
    for leftover in folder.glob(".*.tmp*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
    for old in folder.glob(".*.old-*"):
        if not old.is_dir():
            continue
        target = folder / old.name[1:].rsplit(".old-", 1)[0]
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
