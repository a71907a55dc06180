"""Reading a finished run: the one module through which a run directory that `train.py` wrote is read (its folds,
each fold's best models, the classes, splits, predictions files, results) by score.py, compare_runs.py, publishing,
the int8 agreement and the training loop itself. Paths come from `layout.py`; this module decides what they mean.

Fold names: a fold is numbered k = 1, 2, ... (as `--folds` takes it); its name is `fold<k>` (its folder), used in
every file and message that names a fold (scores.json, compare_runs.py's output, the int8 report, model cards).
`results.json` keys its folds by the number (`"1"`), as `folds_evaluated` lists them. `fold_number` accepts every
spelling a user may type (`1`, `"1"`, `"fold1"`).

A fold is finished when its `metrics.json` exists (written last); `results.json` aggregates the finished folds.

Standard library only: the publishing wing reads runs without torch. The per-utterance predictions CSVs are parsed
by `modeling.metrics.predictions` (the owner of their columns); this module says where they are.
"""

import difflib
import json
import os
import re
from pathlib import Path

from .layout import STAGES, RunDir


FOLD_PREFIX = "fold"
_FOLD_NAME = re.compile(r"^(?:fold)?(\d+)$")


class RunReadError(ValueError):
    """A run directory that cannot be read as a finished train.py run (the message names the path)."""


def close_names_hint(path: str | os.PathLike) -> str:
    """ "Did you mean data/polish3/audio?": the names closest to a `path` that does not exist in its parent folder
    (difflib, at most two), else "" (the path exists, its parent does not, or nothing is close). Used by every check
    of a path a user typed (run directories, predict.py's inputs, --model)."""
    path = Path(path).expanduser()
    parent = path.parent
    if path.exists() or not parent.is_dir():
        return ""
    close = difflib.get_close_matches(path.name, sorted(os.listdir(parent)), n=2, cutoff=0.6)
    return f"Did you mean {' or '.join(str(parent / name) for name in close)}?" if close else ""


def fold_number(name) -> int:
    """`1`, `"1"`, `"fold1"`, `" fold1 "` → 1.

    Raises:
        RunReadError: anything else (the message names it).
    """
    match = _FOLD_NAME.match(str(name).strip())
    if match is None or int(match.group(1)) < 1:
        raise RunReadError(f"{name!r} is not a fold: expected a number k ≥ 1 or fold<k> (e.g. 1 or fold1).")
    return int(match.group(1))


def fold_name(k) -> str:
    """The fold's name: `fold<k>` (its folder in the run directory)."""
    return f"{FOLD_PREFIX}{fold_number(k)}"


def _read_json(path: Path):
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError as error:
        raise RunReadError(f"{path} is not valid JSON ({error}).") from error


class FinishedRun:
    """A run directory `train.py` wrote, read lazily (nothing is read until asked for).

    Args:
        path: the run directory (`train.py --output-dir`).
    """

    def __init__(self, path: str | os.PathLike):
        self.layout = RunDir(path)
        self.path = self.layout.path
        self._results = None

    def __repr__(self) -> str:
        return f"FinishedRun({str(self.path)!r})"

    def not_a_run(self) -> str | None:
        """Why the path is not a train.py run directory at all, or None (a run, finished or not):
        "Run directory X does not exist." (with the closest existing names), X is a file, a checkpoint (config.json),
        or a folder with neither config.yaml (train.py writes it first) nor a fold<k> folder. The one wording of
        these cases for every reader of runs (score.py, compare_runs.py, publishing, the app)."""
        path = self.path
        if not path.exists():
            hint = close_names_hint(path)
            return f"Run directory {path} does not exist." + (f" {hint}" if hint else "")
        expected = "expected a train.py run directory (config.yaml, fold<k>/ folders, results.json once finished)"
        if not path.is_dir():
            return f"{path} is a file, not a run directory; {expected}."
        if (path / "config.json").is_file():
            return f"{path} is a checkpoint (config.json), not a run; {expected}."
        if not self.layout.config.is_file() and not self._fold_numbers():
            return f"{path} is not a train.py run: it holds no config.yaml and no fold<k> folder; {expected}."
        return None

    def _fold_numbers(self) -> list[int]:
        """The numbers of the fold<k> folders, finished or not."""
        if not self.path.is_dir():
            return []
        return sorted(fold_number(p.name) for p in self.path.iterdir() if p.is_dir() and _FOLD_NAME.match(p.name))

    # The folds ----------------------------------------------------------------------------------------------------
    def finished_folds(self) -> list[int]:
        """The folds whose `metrics.json` exists (finished), by number."""
        return [k for k in self._fold_numbers() if self.layout.is_finished(k)]

    def unfinished_folds(self) -> dict[int, str]:
        """{fold: why it is unfinished} for every fold folder without `metrics.json`: its lock file is present (a
        train.py process trains it, or was killed), it has no stage-2 best model yet, or that model is not scored."""
        numbers = self._fold_numbers()
        unfinished = {}
        for k in (k for k in numbers if not self.layout.is_finished(k)):
            if self.layout.fold_lock(k).exists():
                unfinished[k] = "its lock file is present (a train.py process is training it, or was killed)"
            elif not (self.best(k) / "config.json").is_file():
                unfinished[k] = "it has no stage2/best model yet"
            else:
                unfinished[k] = "its stage2/best model is not scored yet (no metrics.json)"
        return unfinished

    def is_finished(self, k) -> bool:
        return self.layout.is_finished(fold_number(k))

    def fold_metrics(self, k) -> dict:
        """The fold's `metrics.json` (its scores, speakers and checkpoints)."""
        path = self.layout.metrics(fold_number(k))
        if not path.is_file():
            raise RunReadError(f"{path} not found: {fold_name(k)} of {self.path} is unfinished.")
        return _read_json(path)

    def best(self, k, stage: str = "stage2") -> Path:
        """The fold's best model of `stage`: as its `metrics.json` records it (`checkpoint`, relative to the run),
        else where the layout puts it. Not checked for existence (see `best_models`)."""
        k = fold_number(k)
        metrics_path = self.layout.metrics(k)
        if metrics_path.is_file():
            metrics = _read_json(metrics_path)
            entry = metrics if stage == "stage2" else (metrics.get(stage) or {})
            if entry.get("checkpoint"):
                return self.path / entry["checkpoint"]
        return self.layout.best(k, stage)

    def best_models(self, stage: str = "stage2") -> dict[int, Path]:
        """{fold: best model of `stage`} for every fold that has one (finished or not), by fold number."""
        numbers = self._fold_numbers()
        return {k: self.best(k, stage) for k in numbers if (self.best(k, stage) / "config.json").is_file()}

    def all_best_models(self) -> dict[str, Path]:
        """{"fold<k>/<stage>": best model} of both stages of every fold that has them."""
        found = {}
        for stage in STAGES:
            for k, path in self.best_models(stage).items():
                found[f"{fold_name(k)}/{stage}"] = path
        return dict(sorted(found.items(), key=lambda item: (fold_number(item[0].split("/")[0]), item[0])))

    def split(self, k) -> dict | None:
        """The fold's `split.json` (speakers, sessions, sizes and class counts of its splits), or None."""
        path = self.layout.split(fold_number(k))
        return _read_json(path) if path.is_file() else None

    def predictions(self, k, split: str = "test") -> Path:
        """`fold<k>/predictions_<split>.csv` (parse it with `modeling.metrics.predictions.read_predictions`).

        Raises:
            RunReadError: the file is missing (runs trained before per-utterance predictions have none).
        """
        path = self.layout.predictions(fold_number(k), split)
        if not path.is_file():
            raise RunReadError(
                f"{path}: missing (a run trained before per-utterance predictions has none; re-score it with this "
                "version)."
            )
        return path

    # The run ------------------------------------------------------------------------------------------------------
    def results(self) -> dict:
        """`results.json`, its folds keyed `"1"`, `"2"`, ... in order (any spelling on disk is normalised).

        Raises:
            RunReadError: not a run (`not_a_run`: no such directory, ...), no results.json (the run has not finished),
                invalid JSON, or no folds in it.
        """
        if self._results is None:
            path = self.layout.results_json
            if not path.is_file():
                why = self.not_a_run()
                if why:
                    raise RunReadError(why)
                raise RunReadError(
                    f"{path} not found: the run in {self.path} has not finished (train.py writes results.json "
                    "once every fold it was asked for is done). Rerun the same train.py command to resume it, or "
                    "add --folds with the finished folds (e.g. --folds 1) to write results.json for those alone."
                )
            results = _read_json(path)
            if not isinstance(results.get("folds"), dict) or not results["folds"]:
                raise RunReadError(f"{path} has no 'folds' entry: it was not written by train.py.")
            folds = {str(fold_number(k)): v for k, v in results["folds"].items()}
            results["folds"] = {k: folds[k] for k in sorted(folds, key=int)}
            self._results = results
        return self._results

    def config(self) -> dict | None:
        """The resolved config the run was trained with, as `results.json` records it (None for runs before it did;
        `config.yaml` beside it holds the same, in YAML)."""
        return self.results().get("config")

    def labels(self) -> list[str]:
        """The run's classes in label-id order: `results.json`'s `labels`, else the best models' `id2label`.

        Raises:
            RunReadError: no classes recorded anywhere, or best models that disagree on them (each fold named).
        """
        try:
            labels = self.results().get("labels")
        except RunReadError:
            labels = None
        by_fold = {}
        for k, best in self.best_models().items():
            id2label = _read_json(best / "config.json").get("id2label") or {}
            by_fold[fold_name(k)] = [id2label[key] for key in sorted(id2label, key=int)]
        if len({tuple(names) for names in by_fold.values()}) > 1:
            raise RunReadError(f"{self.path}: the folds' best models have different classes: {by_fold}.")
        if labels:
            found = next(iter(by_fold.values()), list(labels))
            if list(found) != list(labels):
                raise RunReadError(f"{self.path}: results.json's classes {labels} differ from the models' {found}.")
            return list(labels)
        if not by_fold:
            raise RunReadError(f"{self.path}: no classes recorded (no results.json labels, no fold<k>/stage2/best).")
        return next(iter(by_fold.values()))


def run_location(output_dir: str | os.PathLike) -> str | None:
    """ "fold1, stage2" for a stage's output directory `RUN/fold1/stage2` (the Trainer's `output_dir`), else None."""
    path = Path(output_dir)
    match = _FOLD_NAME.match(path.parent.name)
    if match and path.parent.name.startswith(FOLD_PREFIX) and path.name in STAGES:
        return f"{fold_name(match.group(1))}, {path.name}"
    return None


__all__ = [
    "FOLD_PREFIX",
    "FinishedRun",
    "RunReadError",
    "close_names_hint",
    "fold_name",
    "fold_number",
    "run_location",
]
