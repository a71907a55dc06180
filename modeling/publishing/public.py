"""What may leave the training machine: no local absolute path (which carries the user's name) and no card with a
missing metric.

- `public_results`: `results.json` as published: in its `config`, the corpus root becomes the corpus's name and any
  other absolute path (a local backbone checkpoint, `stage1.from_run`) its folder name.
- `find_local_paths`: a last check over every file of a push for the run's local paths (run directory, corpus root,
  local backbone, home directory); the push is refused before any request if one is found.
- `missing_metrics`: the metrics a card reports that a fold's entry of `results.json` lacks (the Hub rejects a
  model-index metric without a value, after the other files were uploaded).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .run import FinishedFold, Run


# Metrics each fold's card reports (model-index: test UA/WA; the results table: validation UA/WA too).
REQUIRED_METRICS = (("test", "ua"), ("test", "wa"), ("validation", "ua"), ("validation", "wa"))
# Files larger than this are weights (binary): their safetensors header is searched, not the whole file.
MAX_SCANNED_BYTES = 10 << 20


def _is_local_path(value) -> bool:
    return isinstance(value, str) and os.path.isabs(value)


def _scrub(value, corpus: str, key: str = ""):
    if isinstance(value, dict):
        return {k: _scrub(v, corpus, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, corpus, key) for v in value]
    if _is_local_path(value):
        return corpus if key == "data.root" else Path(value.rstrip("/")).name
    return value


def public_config(config: dict, corpus: str) -> dict:
    """`config` with the corpus root as the corpus name and other absolute paths as their folder names."""
    return _scrub(config or {}, corpus)


def public_results(run: Run) -> bytes:
    """`results.json` as published (see the module docstring)."""
    results = dict(run.results)
    results["folds"] = {name: fold for name, fold in run.results["folds"].items()}
    if "config" in results:
        results["config"] = public_config(results["config"], run.corpus)
    return (json.dumps(results, indent=2) + "\n").encode()


def local_paths(run: Run) -> list[str]:
    """The local paths no published file may contain: the run directory, the corpus root, a local backbone and
    `stage1.from_run`, and the home directory (the user's name), absolute and resolved."""
    config = run.config or {}
    candidates = [
        run.path,
        (config.get("data") or {}).get("root"),
        (config.get("model") or {}).get("name_or_path"),
        (config.get("stage1") or {}).get("from_run"),
        Path.home(),
    ]
    found = set()
    for value in candidates:
        if value and (isinstance(value, Path) or _is_local_path(value)):
            for path in (Path(value), Path(value).resolve()):
                if len(path.parts) > 1:
                    found.add(str(path).rstrip("/"))
    return sorted(found, key=len, reverse=True)


def _scanned_bytes(source: Path | bytes) -> bytes:
    if isinstance(source, bytes):
        return source
    size = Path(source).stat().st_size
    with open(source, "rb") as f:
        if size <= MAX_SCANNED_BYTES:
            return f.read()
        if Path(source).suffix == ".safetensors":  # the JSON header (metadata may hold strings)
            header_size = int.from_bytes(f.read(8), "little")
            return f.read(min(header_size, MAX_SCANNED_BYTES))
        return b""


def find_local_paths(files: dict[str, Path | bytes], paths: list[str]) -> list[str]:
    """'<file>: contains <path>' for every file of `files` (path in repo → local file or bytes) that contains one of
    `paths` (as UTF-8, or JSON-escaped)."""
    found = []
    for name, source in files.items():
        data = _scanned_bytes(source)
        for path in paths:
            needles = {path.encode(), json.dumps(path)[1:-1].encode()}
            if any(needle in data for needle in needles):
                found.append(f"{name}: contains {path}")
                break
    return found


def missing_metrics(fold: FinishedFold) -> list[str]:
    """`'<split>.<metric>'` for each metric of `REQUIRED_METRICS` that the fold's results lack or hold as a
    non-number (None, NaN, text)."""
    missing = []
    for split, metric in REQUIRED_METRICS:
        value = (fold.results.get(split) or {}).get(metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            missing.append(f"{split}.{metric}")
    return missing


__all__ = [
    "REQUIRED_METRICS",
    "find_local_paths",
    "local_paths",
    "missing_metrics",
    "public_config",
    "public_results",
]
