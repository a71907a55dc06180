"""A finished run directory of `train.py`, checked for publishing: `results.json`, the config and, per fold, the
stage-2 checkpoint, `metrics.json` and `split.json`, all read through `modeling.rundir.reader`.

`load_run` checks everything a push needs locally and raises `PushError` naming the offending path or fold.
This module reads JSON/YAML and files only: no torch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..rundir.atomic import read_json
from ..rundir.integrity import checkpoint_problems
from ..rundir.layout import RunDir
from ..rundir.reader import FinishedRun, RunReadError, fold_name, fold_number


logger = logging.getLogger(__name__)


class PushError(ValueError):
    """An input of `push_run` (token, run directory, fold, repo id) that cannot be published; raised before any
    upload."""


@dataclass
class FinishedFold:
    """One finished fold of a run: its stage-2 checkpoint and its entry of `results.json`.

    (Not `modeling.data.folds.Fold`, which is a fold's speaker split before training.)
    """

    name: str  # "1", "2", ...
    checkpoint: Path
    results: dict
    split: dict | None = None
    confusion_matrix_image: Path | None = None

    @property
    def label(self) -> str:
        return fold_name(self.name)


@dataclass
class Run:
    """A finished cross-validation run written by `train.py` (see `load_run`)."""

    path: Path
    results: dict
    config: dict
    folds: dict[str, FinishedFold] = field(default_factory=dict)

    @property
    def layout(self) -> RunDir:
        return RunDir(self.path)

    @property
    def all_fold_names(self) -> list[str]:
        return sorted(self.results["folds"], key=_fold_sort_key)

    @property
    def num_folds(self) -> int:
        """Folds of the cross-validation (train.py records it; a run may have evaluated only some)."""
        return int(self.results.get("num_folds") or len(self.results["folds"]))

    @property
    def percent_scale(self) -> float:
        """100 when `results.json` stores UA/WA as fractions (train.py: `metric_scale: fraction`), 1 for percents."""
        scale = self.results.get("metric_scale")
        if scale in ("fraction", "percent"):
            return 100.0 if scale == "fraction" else 1.0
        entries = [self.results.get("mean") or {}]
        for fold in self.results["folds"].values():
            entries += [fold.get("validation") or {}, fold.get("test") or {}]
        values = [entry.get(metric) for entry in entries for metric in ("ua", "wa")]
        values = [v for v in values if isinstance(v, (int, float))]
        return 1.0 if any(v > 1.0 for v in values) else 100.0

    def percent(self, value) -> float | None:
        return None if value is None else round(float(value) * self.percent_scale, 2)

    @property
    def best_validation_fold(self) -> FinishedFold:
        """The published fold with the best validation UA (checkpoint selection's own criterion, never the test
        score); the lowest fold number on a tie."""
        return max(self.folds.values(), key=lambda fold: (fold.results["validation"]["ua"], -fold_number(fold.name)))

    def split(self, name: str) -> dict | None:
        """The fold's `split.json` (any fold of the run, published or not), or None."""
        return FinishedRun(self.path).split(name)

    def labels(self, fold: FinishedFold) -> list[str]:
        """The class names in id order (`FinishedRun.labels`: results.json's, checked against the best models)."""
        return fold.results.get("labels") or FinishedRun(self.path).labels()

    @property
    def corpus(self) -> str:
        """The corpus's short name: the loader for the corpora with a loader of their own (`data.catalog.CORPORA`:
        iemocap, crema_d, ravdess, emodb, msp_podcast), the Hub id for `loader: hub`, else the name of the corpus
        folder (`data/polish3` → polish3)."""
        from ..data.catalog import CORPORA

        data = self.config.get("data") or {}
        loader, root = data.get("loader"), data.get("root")
        if (loader in CORPORA and CORPORA[loader].loader == loader) or not root:
            return loader or "unknown"
        return str(root) if loader == "hub" else Path(str(root).rstrip("/")).name


def _fold_sort_key(name: str):
    return (0, int(name)) if str(name).isdigit() else (1, str(name))


def normalize_fold(name) -> str:
    """`1`, `"1"`, `"fold1"` → `"1"` (the key of `results.json`; see `modeling.rundir.reader.fold_number`).

    Raises:
        PushError: not a fold (`--folds` names it).
    """
    try:
        return str(fold_number(name))
    except RunReadError as error:
        raise PushError(f"--folds: {error}") from None


def load_run(run_dir: str | os.PathLike, folds=None) -> Run:
    """Read and check a finished run directory; `folds` (names like `1` or `"fold1"`) defaults to every fold.

    Raises:
        PushError: the directory, `results.json`, a requested fold, its `metrics.json` or its checkpoint is
            missing or incomplete. The message names the offending path or fold.
    """
    layout = RunDir(run_dir)
    finished = FinishedRun(layout.path)
    try:  # the reader's words for a path that is not a run ("Run directory X does not exist. Did you mean ...?")
        results = finished.results()
    except RunReadError as error:
        raise PushError(str(error)) from None
    run = Run(path=layout.path, results=results, config=_load_config(layout, finished))

    available = run.all_fold_names
    requested = available if folds is None else [normalize_fold(f) for f in folds]
    unknown = [f for f in requested if f not in results["folds"]]
    if unknown:
        untrained = [f for f in unknown if f.isdigit() and 1 <= int(f) <= run.num_folds]
        hint = f"; run `train.py --folds {','.join(untrained)}` with the same config first" if untrained else ""
        raise PushError(
            f"{', '.join(fold_name(f) for f in unknown)} not in {layout.results_json} (evaluated: "
            f"{', '.join(fold_name(f) for f in available)} of {run.num_folds}) (--folds){hint}."
        )
    for name in dict.fromkeys(requested):
        run.folds[name] = _load_fold(run, name)
    return run


def _load_config(layout: RunDir, run: FinishedRun) -> dict:
    """The resolved config (`FinishedRun.config`, recorded in results.json); runs from before it was recorded
    have it only in `config.yaml`."""
    config = run.config()
    if config is not None:
        return config
    if layout.config.is_file():
        with open(layout.config) as f:
            return yaml.safe_load(f) or {}
    logger.warning(f"{layout.config} not found and results.json records no config: the card has no training section.")
    return {}


def _load_fold(run: Run, name: str) -> FinishedFold:
    entry, layout = run.results["folds"][name], run.layout
    if not layout.is_finished(name):
        raise PushError(f"{fold_name(name)} is unfinished: {layout.metrics(name)} not found.")
    checkpoint = FinishedRun(run.path).best(name, "stage2")
    _check_checkpoint(checkpoint, name)
    image = layout.fold_confusion_matrix(name)
    return FinishedFold(name, checkpoint, entry, run.split(name), image if image.is_file() else None)


def _check_checkpoint(checkpoint: Path, fold: str) -> None:
    if not checkpoint.is_dir():
        raise PushError(f"{fold_name(fold)}: checkpoint {checkpoint} not found.")
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (checkpoint / n).is_file()]
    if not list(checkpoint.glob("*.safetensors")):
        missing.append("model.safetensors")
    if missing:
        raise PushError(f"{fold_name(fold)}: checkpoint {checkpoint} is incomplete, missing {', '.join(missing)}.")
    damaged = checkpoint_problems(checkpoint)  # sizes and SHA-256 from checksums.json, or safetensors headers
    if damaged:
        raise PushError(
            f"{fold_name(fold)}: checkpoint {checkpoint} is damaged: {'; '.join(damaged)}. Retrain the fold."
        )
    config = read_json(checkpoint / "config.json")
    auto_map = config.get("auto_map") or {}
    if "AutoModelForAudioClassification" not in auto_map:
        raise PushError(
            f"{fold_name(fold)}: {checkpoint / 'config.json'} has no auto_map for AutoModelForAudioClassification, so "
            "Hub users could not load it with trust_remote_code=True (save it after `import modeling`)."
        )
    modules = {ref.split(".")[0] for ref in auto_map.values() if isinstance(ref, str)}
    absent = sorted(f"{m}.py" for m in modules if not (checkpoint / f"{m}.py").is_file())
    if absent:
        raise PushError(f"{fold_name(fold)}: remote-code file(s) {', '.join(absent)} missing from {checkpoint}.")


__all__ = ["FinishedFold", "PushError", "Run", "load_run", "normalize_fold"]
