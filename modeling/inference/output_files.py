"""The output files of the batch entry points (predict.py, its Ray engine, the timeline, score.py): checked before
anything is written, then appended whole lines at a time and fsynced, so that a kill leaves at most a partial last
line, cut off on restart (`repair_partial_line`)."""

import csv
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..data.problems import Problem
from ..rundir.faults import fault_point


def repair_partial_line(path: Path) -> bool:
    """Cut a last line without its newline (a write interrupted by a kill). Returns whether anything was cut."""
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return False
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())
    return True


def output_problems(outputs) -> list[Problem]:
    """{option: path} (or (option, path) pairs) of files a job will write → problems found before anything is
    written: a path that is a folder, a parent that is a file, a folder that cannot be written to."""
    problems = []
    for option, path in outputs.items() if isinstance(outputs, dict) else outputs:
        if path is None:
            continue
        path = Path(path)
        parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), Path("."))
        if path.is_dir():
            problems.append(Problem(option, f"{option} {path}: is a folder; expected a file name"))
        elif not parent.is_dir():
            problems.append(Problem(option, f"{option} {path}: {parent} is a file, not a folder"))
        elif not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
            problems.append(Problem(option, f"{option} {path}: not writable (permissions of {parent})"))
    return problems


def append_bytes(path: Path, data: bytes, point: str, leading: Iterable[bytes] = ()) -> None:
    """Append `leading` chunks then `data` (together whole lines) and fsync. Fault point `predict:partial-write:<name>`
    sits inside the write of `data`, where half of its last line is written (what a kill inside the system call
    could leave)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides, as for open()
    try:
        for chunk in leading:
            _write_all(fd, chunk)
        last_line = data.rfind(b"\n", 0, len(data) - 1) + 1
        half = (last_line + len(data)) // 2
        os.write(fd, data[:half])
        fault_point(f"predict:partial-write:{point}")
        _write_all(fd, data[half:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def spool_parts(spool, block: int = 1 << 20) -> tuple[Iterator[bytes], bytes]:
    """A spool file's content as (its leading blocks, its last ≤ `block` bytes): `append_bytes`'s arguments, so a
    long recording's rows are copied block by block, never whole in memory."""
    size = spool.seek(0, os.SEEK_END)
    cut = max(0, size - block)
    spool.seek(cut)
    last = spool.read()

    def leading():
        spool.seek(0)
        done = 0
        while done < cut:
            chunk = spool.read(min(block, cut - done))
            done += len(chunk)
            yield chunk

    return leading(), last


def csv_text(rows: list[list], header: list[str] | None = None) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


__all__ = ["append_bytes", "csv_text", "output_problems", "repair_partial_line", "spool_parts"]
