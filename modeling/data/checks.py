"""Checks that run before any training: every problem is collected and reported at once.

- audio: missing, unreadable, empty or non-finite files (decoded with `load_audio`, the one audio path);
- labels: empty labels and labels outside the expected classes (`label == -1` rows of a corpus Dataset);
- folds: a class absent from a fold's training split, an empty split, a speaker in two splits;
- checkpoints: a stage-1 checkpoint whose label map differs from the labels of this run.

`--skip-bad-audio` drops the rows with bad audio instead of failing, and writes what it dropped to a report.
"""

import difflib
import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset
from tqdm.auto import tqdm

from ..audio import AudioInputError, load_audio
from ..configuration_frame_aligned import label_names
from ..rundir.reader import fold_name
from .folds import SPLITS, Fold, speaker_overlap_problems, split_fold
from .problems import CheckError, Problem, as_problem


EXAMPLE_FILES = 2  # example files named per spelling of a class
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


def label_problems(dataset: Dataset, labels_origin: str | None = None) -> list[Problem]:
    """Every problem with the labels of a corpus Dataset:

    - spellings of one class (`label_spelling_problems`): class names that differ only by letter case, surrounding
      whitespace or Unicode normalisation, and rows whose label matches a listed class only that way;
    - one problem per other row whose label is empty or not one of the dataset's classes; rows with the same label
      share a `cause` ("unknown label 'x'; expected one of [...]"), so a label list that misses a class is one group.

    Args:
        labels_origin: where the label list was set (a config file, a `--set` argument; `run_config.config_origins`),
            named in the unknown-label problems; None: not named.
    """
    names = dataset.features["label"].names
    spelling, spelled_rows = label_spelling_problems(dataset)
    listed = f"expected one of {names}" + (
        f" (data.loader_args.labels, from {labels_origin})" if labels_origin else ""
    )
    problems = []
    for row, (audio, label, text) in enumerate(zip(dataset["audio"], dataset["label"], dataset["label_text"])):
        if label >= 0 or row in spelled_rows:
            continue
        close = difflib.get_close_matches(text, names, n=1, cutoff=0.6) if text else []
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        cause = f"empty label; {listed}" if not text else f"unknown label {text!r}{hint}; {listed}"
        problems.append(Problem(_name(audio), f"{_name(audio)}: {cause}.", text, cause=cause))
    return spelling + problems


def label_key(text: str) -> str:
    """What two spellings of one class share: NFC form, without surrounding whitespace, case-folded."""
    return unicodedata.normalize("NFC", text).strip().casefold()


def label_spelling_problems(dataset: Dataset) -> tuple[list[Problem], set[int]]:
    """(one problem per class spelled more than one way, the rows of the spellings that are not classes).

    Spellings are labels with the same `label_key` (letter case, surrounding whitespace, NFC vs NFD): either several
    class names (an inferred label list: 'Angry' and 'angry' would train as two classes) or a row's label that is
    not a class but matches one (a given list: the rows would be unknown labels). Each problem names every
    spelling with its row count and a few example files, and what to do.
    """
    names = dataset.features["label"].names
    keys = {label_key(name) for name in names}
    spellings: dict[str, dict[str, list[int]]] = {}  # key → spelling → rows (every class, even without rows)
    for name in names:
        spellings.setdefault(label_key(name), {})[name] = []
    for row, (label, text) in enumerate(zip(dataset["label"], dataset["label_text"])):
        spelling = names[label] if label >= 0 else text
        if spelling and label_key(spelling) in keys:
            spellings.setdefault(label_key(spelling), {}).setdefault(spelling, []).append(row)
    problems, rows_outside = [], set()
    audio = dataset["audio"]
    for found in spellings.values():
        if len(found) < 2:
            continue
        classes = [spelling for spelling in found if spelling in names]
        outside = [spelling for spelling in found if spelling not in names]
        rows_outside.update(row for spelling in outside for row in found[spelling])
        shown = " and ".join(_spelling(spelling, found[spelling], audio) for spelling in found)
        how = _differences(list(found))
        if len(classes) > 1:
            todo = (
                f"they would train as {len(classes)} classes. Write every row with one spelling, or list the classes "
                "in data.loader_args.labels (then rows spelled otherwise are reported)"
            )
        else:
            todo = (
                f"rows spelled {' or '.join(map(repr, outside))} are not the listed class {classes[0]!r}. "
                f"Write them as {classes[0]!r}"
            )
        message = f"labels {shown} differ only by {how}: {todo}."
        problems.append(Problem("label", message, sorted(found), cause=None))
    return problems, rows_outside


def _spelling(spelling: str, rows: list[int], audio: list) -> str:
    """'Angry' (3 rows, e.g. a.wav, b.wav); non-ASCII spellings also show their code points (NFC and NFD look
    alike)."""
    code_points = "" if spelling.isascii() else f" = {ascii(spelling)}"
    if not rows:
        return f"{spelling!r}{code_points} (no rows)"
    examples = ", ".join(Path(_name(audio[row])).name for row in rows[:EXAMPLE_FILES])
    return f"{spelling!r}{code_points} ({len(rows)} row(s), e.g. {examples})"


def _differences(spellings: list[str]) -> str:
    """What separates spellings of one `label_key`, in words: letter case, surrounding whitespace, Unicode form."""
    nfc = [unicodedata.normalize("NFC", s) for s in spellings]
    found = []
    if len({s.strip() for s in nfc}) > 1:
        found.append("letter case")
    if len({(s[: len(s) - len(s.lstrip())], s[len(s.rstrip()) :]) for s in spellings}) > 1:
        found.append("surrounding whitespace")
    if len({unicodedata.is_normalized("NFC", s) for s in spellings}) > 1:
        found.append("Unicode normalisation (NFC vs NFD)")
    return ", ".join(found)


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
    "label_key",
    "label_problems",
    "label_spelling_problems",
]
