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
from .folds import SPLITS, Fold, speaker_overlap_problems, split_fold


class DatasetCheckError(ValueError):
    """Raised with the full list of problems found before training."""

    def __init__(self, problems: list[str], hint: str = ""):
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) found before training:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines + ([hint] if hint else [])))


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


def label_problems(dataset: Dataset) -> list[str]:
    """One message per row whose label is empty or not one of the dataset's classes."""
    names = dataset.features["label"].names
    problems = []
    for audio, label, text in zip(dataset["audio"], dataset["label"], dataset["label_text"]):
        if label >= 0:
            continue
        if not text:
            problems.append(f"{_name(audio)}: empty label; expected one of {names}.")
        else:
            problems.append(f"{_name(audio)}: unknown label {text!r}; expected one of {names}.")
    return problems


def fold_problems(dataset: Dataset, folds: list[Fold]) -> list[str]:
    """Speakers in two splits, empty splits, and classes missing from a training split, for every fold."""
    names = dataset.features["label"].names
    problems = []
    for fold in folds:
        overlap = speaker_overlap_problems(fold)
        if overlap:
            problems += overlap
            continue
        splits = split_fold(dataset, fold)
        problems += speaker_overlap_problems(fold, splits)
        for split in SPLITS:
            if len(splits[split]) == 0:
                where = "" if fold.predefined else f" (speakers {list(fold.speakers(split))})"
                problems.append(f"fold {fold.number}: the {split} split{where} is empty.")
        present = set(splits["train"]["label"])
        absent = [name for i, name in enumerate(names) if i not in present]
        if absent:
            problems.append(
                f"fold {fold.number}: class(es) {absent} absent from the training split "
                f"(speakers {list(fold.train)}); every class needs training examples."
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
