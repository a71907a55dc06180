"""Checkpoint integrity: every checkpoint a run writes records its files' sizes and SHA-256 (`checksums.json`);
resume and scoring verify them before use, so a truncated or bit-flipped `model.safetensors` (disk full, bit rot, a
copy cut short) is detected and discarded instead of being loaded or crashing inside safetensors.

A checkpoint without `checksums.json` (written by an older version, or killed between its last file and the
manifest) gets the check that needs no record: each `*.safetensors` file's header must parse and its tensors'
byte ranges must end exactly at the end of the file. Standard library only (the publishing wing verifies too).
"""

import hashlib
import json
import os
import struct
from pathlib import Path

from .atomic import atomic_write_json


MANIFEST = "checksums.json"


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: str | os.PathLike) -> dict:
    """Record size and SHA-256 of every file in `folder` (recursively; the manifest itself excluded) in
    `folder/checksums.json`, atomically. Returns the record."""
    folder = Path(folder)
    files = {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_of(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST and not path.name.startswith(".")
    }
    record = {"algorithm": "sha256", "files": files}
    atomic_write_json(folder / MANIFEST, record)
    return record


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a complete safetensors file (None when its header parses and its data ends exactly at the
    end of the file)."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            if header_size > size - 8:
                return f"{path.name}: header of {header_size} bytes in a file of {size} bytes (truncated)"
            header = json.loads(f.read(header_size))
    except (struct.error, ValueError, UnicodeDecodeError) as error:
        return f"{path.name}: unreadable safetensors header ({error})"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    expected = 8 + header_size + max(ends, default=0)
    if expected != size:
        return f"{path.name}: {size} bytes, its header describes {expected} (truncated or padded)"
    return None


def checkpoint_problems(folder: str | os.PathLike) -> list[str]:
    """Everything wrong with a checkpoint folder's files (empty list: intact).

    With `checksums.json`: each recorded file must exist with its size and SHA-256. Without: each `*.safetensors`
    file must pass `safetensors_problem`.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return [problem for path in sorted(folder.glob("*.safetensors")) if (problem := safetensors_problem(path))]
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as error:
        return [f"{MANIFEST}: unreadable ({error})"]
    problems = []
    for name, expected in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != expected["size"]:
            problems.append(f"{name}: {path.stat().st_size} bytes, {expected['size']} recorded (truncated?)")
        elif sha256_of(path) != expected["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the recorded one (corrupted)")
    return problems


__all__ = ["MANIFEST", "checkpoint_problems", "safetensors_problem", "sha256_of", "write_manifest"]
