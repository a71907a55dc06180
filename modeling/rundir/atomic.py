"""Crash-safe writes: a reader never sees a half-written results file or checkpoint directory.

Files and folders get the mode a plain `open()` / `mkdir()` would give them (0666 / 0777 minus the umask), not
`tempfile`'s private 0600 / 0700.

Each write passes a named `fault_point` (see `faults.py`) where the crash tests stop the process on purpose.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from .faults import fault_point


def current_umask() -> int:
    """The process's umask (Linux: read from /proc, so no other thread sees it changed; elsewhere set and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: str | os.PathLike, directory: bool) -> None:
    """Give a temporary file (0600) or folder (0700) of `tempfile` the mode `open()`/`mkdir()` would have given it
    (0666/0777 minus the umask), so results and checkpoints are as readable as any other file the user writes."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def plain_modes(folder: str | os.PathLike) -> None:
    """Give `folder` and everything inside it the mode `open()`/`mkdir()` would have given them (0666/0777 minus
    the umask): transformers 5.24's `save_pretrained` writes model.safetensors 0600, so a run's best/ and Trainer
    checkpoints were unreadable to a colleague. Symbolic links are left alone."""
    folder = Path(folder)
    for inner in [folder, *folder.rglob("*")]:
        if not inner.is_symlink():
            _as_if_created(inner, directory=inner.is_dir())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w"):
    """Yield a temporary file in the same folder as `path` (opened with `mode`, "w" or "wb"); on success it is
    flushed, fsynced and renamed over `path`. On an exception it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        try:
            _as_if_created(f.name, directory=False)
            yield f
            f.flush()
            os.fsync(f.fileno())
        except BaseException as error:
            f.close()
            Path(f.name).unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise failed_write(path, error) from error
            raise
    try:
        fault_point(f"atomic-write:before-rename:{_location(path)}")
        os.replace(f.name, path)
    except BaseException:
        Path(f.name).unlink(missing_ok=True)
        raise


def failed_write(path: Path, error: OSError) -> OSError:
    """An `OSError` (same errno) naming the target, the cause and that the previous content is intact."""
    state = "keeps its previous content" if path.exists() else "was not created"
    return OSError(
        error.errno,
        f"Writing {path} failed: {error.strerror or error} ({error.filename or 'no file name'}); {path.name} {state}.",
    )


def _location(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`.

    On an exception `path` keeps its previous content and the temporary file is removed; after a kill it is left
    as `.name.*.tmp`, which `cleanup_stale_tmp` deletes.
    """
    with atomic_file(path) as f:
        f.write(text)


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
        _as_if_created(tmp, directory=True)
        yield tmp
        plain_modes(tmp)  # what others wrote inside (save_pretrained's model.safetensors is 0600) too
        fault_point(f"atomic-directory:before-rename:{_location(path)}")
    except OSError as error:  # e.g. a full disk: say what was being written, and that the old content is intact
        shutil.rmtree(tmp, ignore_errors=True)
        raise failed_write(path, error) from error
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
