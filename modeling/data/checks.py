"""Checks that run before any training: every problem is collected and reported at once.

- audio: missing, unreadable, empty or non-finite files (decoded with `load_audio`, the one audio path);
- labels: empty labels and labels outside the expected classes (`label == -1` rows of a corpus Dataset);
- folds: a class absent from a fold's training split, an empty split, a speaker in two splits;
- checkpoints: a stage-1 checkpoint whose label map differs from the labels of this run.

`--skip-bad-audio` drops the rows with bad audio instead of failing, and writes what it dropped to a report.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from tqdm.auto import tqdm

from ..audio import AudioInputError, load_audio
from ..configuration_frame_aligned import label_names
from ..rundir.reader import fold_name
from .folds import SPLITS, Fold, speaker_overlap_problems, split_fold
from .problems import CheckError, Problem, as_problem


# Raised with the full list of problems found before training, grouped by cause (the one error of the checks).
DatasetCheckError = CheckError


@dataclass(frozen=True)
class BadAudio:
    row: int
    audio: str
    reason: str

    def to_dict(self, dataset: Dataset) -> dict:
        example = dataset[self.row]
        return {
            "file": self.audio,
            "reason": self.reason,
            "speaker": example["speaker"],
            "label": example["label_text"],
        }


def _name(audio) -> str:
    return str(audio.get("path") or "<bytes>") if isinstance(audio, dict) else str(audio)


def find_bad_audio(dataset: Dataset, progress: bool = True) -> list[BadAudio]:
    """Decode every clip; one `BadAudio` per file that is missing, unreadable, empty or has NaN/Inf samples."""
    bad = []
    for row, audio in enumerate(tqdm(dataset["audio"], desc="Checking audio", disable=not progress, unit="file")):
        try:
            load_audio(audio)
        except AudioInputError as error:
            bad.append(BadAudio(row, _name(audio), str(error)))
    return bad


def label_problems(dataset: Dataset) -> list[Problem]:
    """One problem per row whose label is empty or not one of the dataset's classes; rows with the same label share
    a `cause` ("unknown label 'x'; expected one of [...]"), so a label list that misses a class is one group."""
    names = dataset.features["label"].names
    problems = []
    for audio, label, text in zip(dataset["audio"], dataset["label"], dataset["label_text"]):
        if label >= 0:
            continue
        cause = (
            f"empty label; expected one of {names}" if not text else f"unknown label {text!r}; expected one of {names}"
        )
        problems.append(Problem(_name(audio), f"{_name(audio)}: {cause}.", text, cause=cause))
    return problems


def fold_problems(dataset: Dataset, folds: list[Fold]) -> list[Problem]:
    """Speakers in two splits, empty splits, and classes missing from a training split, for every fold (a class
    missing from several folds is one cause)."""
    names = dataset.features["label"].names
    problems = []
    for fold in folds:
        overlap = speaker_overlap_problems(fold)
        if overlap:
            problems += [as_problem(problem) for problem in overlap]
            continue
        splits = split_fold(dataset, fold)
        problems += [as_problem(problem) for problem in speaker_overlap_problems(fold, splits)]
        for split in SPLITS:
            if len(splits[split]) == 0:
                where = "" if fold.predefined else f" (speakers {list(fold.speakers(split))})"
                problems.append(
                    Problem(fold_name(fold.number), f"{fold_name(fold.number)}: the {split} split{where} is empty.")
                )
        present = set(splits["train"]["label"])
        absent = [name for i, name in enumerate(names) if i not in present]
        if absent:
            message = (
                f"{fold_name(fold.number)}: class(es) {absent} absent from the training split "
                f"(speakers {list(fold.train)}); every class needs training examples."
            )
            problems.append(
                Problem(
                    fold_name(fold.number),
                    message,
                    absent,
                    cause=f"class(es) {absent} absent from "
                    "the training split of a fold; every class needs training examples",
                )
            )
    return problems


def label_map_problems(checkpoint_dir: str | Path, labels: list[str]) -> list[str]:
    """A checkpoint's `id2label` must equal this run's classes (the dataset's ClassLabel names), in order."""
    config_path = Path(checkpoint_dir) / "config.json"
    with open(config_path) as f:
        found = label_names(json.load(f).get("id2label") or {})
    if found != list(labels):
        return [f"{config_path}: label map {found} differs from this run's labels {list(labels)}."]
    return []


__all__ = [
    "BadAudio",
    "DatasetCheckError",
    "find_bad_audio",
    "fold_problems",
    "label_map_problems",
    "label_problems",
]
