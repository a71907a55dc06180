"""Locks in a run directory: one process trains a fold at a time; results are aggregated one process at a time.

A lock is a file created with `O_CREAT | O_EXCL` holding its holder: process id, host, the process's start time (so a
reused process id is not mistaken for the holder) and the command. `FoldLock` refuses when the fold is held by a live
process, naming it; a lock whose holder is gone (killed, crashed: same host, no such process) is stale and taken over,
with a warning. A holder on another host cannot be checked from here: the error says so and which file to delete.

Different folds of one run directory can train in parallel (a cluster array job): each has its own lock, and the
results are aggregated under the run's own lock (`run_lock`), waiting for it, so whichever process finishes last
writes a `results.json` with every finished fold.
"""

import contextlib
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from .faults import fault_point
from .reader import fold_name


logger = logging.getLogger(__name__)


class LockHeldError(RuntimeError):
    """The lock is held by another live process (or one on another host)."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux `/proc/<pid>/stat` field 22), None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(holder: dict) -> bool:
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    started = _start_time(int(holder["pid"]))
    return holder.get("started") is None or started is None or started == holder["started"]


def describe(holder: dict) -> str:
    return f"process {holder.get('pid')} on host {holder.get('host')} ({holder.get('command', '?')})"


class FileLock:
    """An exclusive lock file at `path` (see the module docstring). `what` names it in messages ("fold1")."""

    def __init__(self, path: str | os.PathLike, what: str):
        self.path, self.what, self.held = Path(path), what, False
        self.me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _start_time(os.getpid()),
            "command": " ".join(sys.argv)[:300],
        }

    def try_acquire(self) -> dict | None:
        """Take the lock (taking over a stale one); returns None, or the live holder's record."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile, or unreadable (being written): try again
                if holder["host"] != self.me["host"] or _alive(holder):
                    return holder
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            return None
        return self._holder() or {"pid": "?", "host": "?"}

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:  # a holder killed between creating and writing it: empty, as good as stale
            if time.time() - self.path.stat().st_mtime > 5:
                return {"pid": -1, "host": self.me["host"]}
            return None

    def _take_over(self, holder: dict):
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.rename(self.path, aside)  # only one of several processes taking over succeeds
        except FileNotFoundError:
            return
        aside.unlink(missing_ok=True)
        logger.warning(f"{self.what}: taking over the stale lock {self.path} of {describe(holder)}, which is gone.")

    def acquire(self, wait_s: float = 0.0):
        """Take the lock, waiting up to `wait_s` seconds for a live holder. Raises `LockHeldError` naming it."""
        deadline = time.monotonic() + wait_s
        while True:
            holder = self.try_acquire()
            if holder is None:
                return self
            if time.monotonic() >= deadline:
                elsewhere = holder.get("host") != self.me["host"]
                hint = (
                    f" It runs on another host, so it cannot be checked from here; if it is no longer running, "
                    f"delete {self.path}."
                    if elsewhere
                    else " Wait for it to finish, or stop it; a killed process's lock is taken over automatically."
                )
                raise LockHeldError(f"{self.what} is being trained by {describe(holder)} (lock {self.path}).{hint}")
            time.sleep(0.2)

    def release(self):
        if self.held:
            holder = self._holder()
            if holder and holder.get("pid") == self.me["pid"] and holder.get("host") == self.me["host"]:
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self if self.held else self.acquire()

    def __exit__(self, *exc):
        self.release()


@contextlib.contextmanager
def fold_lock(path: str | os.PathLike, fold: int, enabled: bool = True):
    """Hold fold `fold`'s lock (refusing at once when a live process holds it); a no-op when not `enabled` (the
    non-main processes of a torchrun job: the main one holds it for all)."""
    if not enabled:
        yield
        return
    with FileLock(path, fold_name(fold)):
        fault_point(f"lock:acquired:fold{fold}")
        yield


@contextlib.contextmanager
def run_lock(path: str | os.PathLike, enabled: bool = True, wait_s: float = 600.0):
    """Hold the run directory's own lock (aggregating results, creating the initial backbone), waiting for it."""
    if not enabled:
        yield
        return
    with FileLock(path, "The run directory's results").acquire(wait_s):
        yield


__all__ = ["FileLock", "LockHeldError", "fold_lock", "run_lock"]
