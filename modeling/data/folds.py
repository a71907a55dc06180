"""Speaker-independent cross-validation folds: which speakers are train / validation / test.

Strategies (`data.folds` in a config):

- `leave_one_session_out` (IEMOCAP): fold k holds out session k; its male speaker is validation, its female
  speaker test; the other sessions train.
- `leave_speakers_out`: speakers, ordered by (gender, id), are dealt round-robin into `num_folds` groups (default:
  one speaker per group = leave-one-speaker-out); fold k tests group k, validates on group k+1 (cyclically) and
  trains on the rest. Dealing by gender keeps the groups gender-balanced.
- `gender_pairs`: fold k validates on the k-th male and tests on the k-th female speaker (the IEMOCAP protocol for
  corpora without sessions); everyone else trains. min(#female, #male) folds.

- `predefined`: the dataset's own train/validation/test split, one fold; rows carry it in a `split` column
  (`train`; `validation`, also written `valid`, `val`, `dev`; `test`); rows with other values are left out and
  logged. Several official folds (EmoBox's): one `split_fold<k>` column per fold, "" where a row is not in it.
  No speaker column is needed (speaker independence is then the dataset's own business).

Fold numbers are 1-based everywhere (`--folds 1,3`, `fold1/`, results.json).
"""

import logging
import re
from collections import Counter
from dataclasses import dataclass

from datasets import Dataset, DatasetDict

from ..rundir.reader import RunReadError, fold_name, fold_number


logger = logging.getLogger(__name__)

FOLD_STRATEGIES = ("leave_one_session_out", "leave_speakers_out", "gender_pairs", "predefined")
SPLITS = ("train", "validation", "test")
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


class FoldError(ValueError):
    """The corpus cannot be split with the requested strategy (the message says why)."""


@dataclass(frozen=True)
class Fold:
    """Speakers of each split of one fold (`number` is 1-based)."""

    number: int
    train: tuple[str, ...]
    validation: tuple[str, ...]
    test: tuple[str, ...]
    predefined: bool = False  # rows are split by their `split` column, not by speaker
    split_column: str = "split"  # predefined: the column holding this fold's split (`split_fold<k>`: one per fold)

    def speakers(self, split: str) -> tuple[str, ...]:
        return getattr(self, split)

    def describe(self) -> str:
        if self.predefined:
            return "the dataset's own train / validation / test split"
        return f"train {','.join(self.train)} | validation {','.join(self.validation)} | test {','.join(self.test)}"


def _speakers_by_gender(dataset: Dataset) -> list[tuple[str, str]]:
    """Sorted unique (gender, speaker) pairs; raises if a speaker is empty or has two genders."""
    pairs = set(zip(dataset["gender"], dataset["speaker"]))
    if any(not speaker for _, speaker in pairs):
        raise FoldError(
            "some rows have no speaker: speaker-independent folds need a speaker for every row "
            "(metadata.csv column `speaker`, or `speaker_regex` for label sub-folders)."
        )
    genders = Counter(speaker for _, speaker in pairs)
    conflicting = sorted(speaker for speaker, count in genders.items() if count > 1)
    if conflicting:
        raise FoldError(f"speaker(s) {conflicting} appear with more than one gender; expected one gender per speaker.")
    return sorted(pairs)


def leave_one_session_out(dataset: Dataset) -> list[Fold]:
    sessions = sorted(set(dataset["session"]))
    if sessions == [-1] or len(sessions) < 3:
        raise FoldError(f"leave_one_session_out needs at least 3 sessions (IEMOCAP has 5), got {sessions}.")
    speakers_of = {session: set() for session in sessions}
    for session, gender, speaker in zip(dataset["session"], dataset["gender"], dataset["speaker"]):
        speakers_of[session].add((gender, speaker))
    folds = []
    for number, session in enumerate(sessions, start=1):
        held_out = speakers_of[session]
        males = sorted(s for g, s in held_out if g == "male")
        females = sorted(s for g, s in held_out if g == "female")
        if len(males) != 1 or len(females) != 1:
            raise FoldError(
                f"session {session}: expected one male (validation) and one female (test) speaker, "
                f"got male {males}, female {females}."
            )
        train = sorted(s for other in sessions if other != session for _, s in speakers_of[other])
        folds.append(Fold(number, tuple(train), tuple(males), tuple(females)))
    return folds


def leave_speakers_out(dataset: Dataset, num_folds: int | None = None) -> list[Fold]:
    speakers = [speaker for _, speaker in _speakers_by_gender(dataset)]
    num_folds = num_folds or len(speakers)
    if not 3 <= num_folds <= len(speakers):
        raise FoldError(
            f"leave_speakers_out: num_folds must be between 3 and the number of speakers ({len(speakers)}), "
            f"got {num_folds} (each fold needs disjoint train, validation and test speakers)."
        )
    groups = [tuple(sorted(speakers[k::num_folds])) for k in range(num_folds)]
    folds = []
    for k in range(num_folds):
        validation = groups[(k + 1) % num_folds]
        train = sorted(s for j, group in enumerate(groups) if j not in (k, (k + 1) % num_folds) for s in group)
        folds.append(Fold(k + 1, tuple(train), validation, groups[k]))
    return folds


def gender_pairs(dataset: Dataset) -> list[Fold]:
    pairs = _speakers_by_gender(dataset)
    females = [s for g, s in pairs if g == "female"]
    males = [s for g, s in pairs if g == "male"]
    if not females or not males or len(pairs) < 3:
        raise FoldError(
            f"gender_pairs needs female and male speakers and at least 3 in all, got female {females}, male {males}."
        )
    folds = []
    for k, (female, male) in enumerate(zip(females, males)):
        train = sorted(s for _, s in pairs if s not in (female, male))
        folds.append(Fold(k + 1, tuple(train), (male,), (female,)))
    return folds


def canonical_split(value) -> str | None:
    """`"Train"`, `"dev"`, `"valid"` ... → train / validation / test; None for anything else."""
    return SPLIT_NAMES.get(str(value or "").strip().lower())


def predefined(dataset: Dataset) -> list[Fold]:
    """One fold from the dataset's `split` column, or one fold per `split_fold<k>` column (several official folds,
    e.g. EmoBox's); speakers listed per split for the reports (may be empty)."""
    numbered = sorted(int(m.group(1)) for c in dataset.column_names for m in [_SPLIT_FOLD.match(c)] if m)
    if numbered:
        return [_predefined_fold(dataset, k, f"split_fold{k}") for k in numbered]
    if "split" not in dataset.column_names:
        raise FoldError(
            "data.folds: predefined needs a `split` column (train/validation/test): split folders "
            "(<root>/train, <root>/validation, <root>/test) or a `split` column in metadata.csv / the dataset."
        )
    return [_predefined_fold(dataset, 1, "split")]


_SPLIT_FOLD = re.compile(r"^split_fold(\d+)$")


def _predefined_fold(dataset: Dataset, number: int, column: str) -> Fold:
    speakers = {split: set() for split in SPLITS}
    ignored = Counter()
    for split, speaker in zip(dataset[column], dataset["speaker"]):
        name = canonical_split(split)
        if name is None:
            ignored[str(split)] += 1
        elif speaker:
            speakers[name].add(speaker)
    ignored.pop("", None)  # "" in split_fold<k>: the utterance is not part of fold k
    if ignored:
        logger.warning(
            f"data.folds predefined: left out rows whose split is not train/validation/test: {dict(ignored)}."
        )
    return Fold(number, *(tuple(sorted(speakers[split])) for split in SPLITS), predefined=True, split_column=column)


def make_folds(dataset: Dataset, strategy: str, num_folds: int | None = None) -> list[Fold]:
    """All folds of `dataset` under `strategy` (see the module docstring)."""
    if strategy == "predefined":
        return predefined(dataset)
    if strategy == "leave_one_session_out":
        return leave_one_session_out(dataset)
    if strategy == "leave_speakers_out":
        return leave_speakers_out(dataset, num_folds)
    if strategy == "gender_pairs":
        return gender_pairs(dataset)
    raise FoldError(f"data.folds must be one of {FOLD_STRATEGIES}, got {strategy!r}.")


def parse_fold_numbers(text: str | None, num_folds: int) -> list[int]:
    """`"1,3"` or `"fold1,fold3"` → [1, 3]; `None`/`"all"` → every fold. Each part is read by
    `modeling.rundir.reader.fold_number` (the one parser of fold names: `1`, `fold1`), as push_to_hub.py reads
    its `--folds`. Raises `FoldError` on anything else and on numbers outside 1..num_folds."""
    if text is None or str(text).strip().lower() in ("", "all"):
        return list(range(1, num_folds + 1))
    try:
        numbers = sorted({fold_number(part) for part in str(text).split(",") if part.strip()})
    except RunReadError as error:
        raise FoldError(
            f"--folds expects comma-separated folds like 1,3 or fold1,fold3, got {text!r}: {error}"
        ) from None
    bad = [n for n in numbers if not 1 <= n <= num_folds]
    if bad or not numbers:
        raise FoldError(f"--folds: fold numbers must be in 1..{num_folds}, got {text!r}.")
    return numbers


def split_fold(dataset: Dataset, fold: Fold) -> DatasetDict:
    """The rows of each split of `fold` (original row order), after checking speaker independence (for
    speaker folds; a predefined fold takes the `split` column as it is)."""
    if fold.predefined:
        names = [canonical_split(value) for value in dataset[fold.split_column]]
        return DatasetDict(
            {split: dataset.select([i for i, name in enumerate(names) if name == split]) for split in SPLITS}
        )
    problems = speaker_overlap_problems(fold)
    if problems:
        raise FoldError("; ".join(problems))
    split_of = {speaker: split for split in SPLITS for speaker in fold.speakers(split)}
    indices = {split: [] for split in SPLITS}
    for i, speaker in enumerate(dataset["speaker"]):
        if speaker in split_of:
            indices[split_of[speaker]].append(i)
    return DatasetDict({split: dataset.select(indices[split]) for split in SPLITS})


def speaker_overlap_problems(fold: Fold, splits: DatasetDict | None = None) -> list[str]:
    """One message per speaker found in two splits of `fold` (from the fold and, if given, the split rows); none for
    a predefined fold (the dataset's own split)."""
    problems = []
    if fold.predefined:
        return problems
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            a, b = set(fold.speakers(first)), set(fold.speakers(second))
            if splits is not None:
                a |= set(splits[first]["speaker"])
                b |= set(splits[second]["speaker"])
            for speaker in sorted(a & b):
                problems.append(f"{fold_name(fold.number)}: speaker {speaker!r} is in both {first} and {second}.")
    return problems


def split_summary(fold: Fold, splits: DatasetDict) -> dict:
    """What `fold<k>/split.json` holds: speakers, sessions, size and class counts of each split."""
    names = splits["train"].features["label"].names
    summary = {"fold": fold.number}
    for split in SPLITS:
        rows = splits[split]
        counts = Counter(rows["label"])
        summary[split] = {
            "speakers": list(fold.speakers(split)),
            "sessions": sorted({s for s in rows["session"] if s >= 0}),
            "num_examples": len(rows),
            "class_counts": {name: counts.get(i, 0) for i, name in enumerate(names)},
        }
    return summary


__all__ = [
    "FOLD_STRATEGIES",
    "Fold",
    "FoldError",
    "SPLITS",
    "canonical_split",
    "gender_pairs",
    "leave_one_session_out",
    "leave_speakers_out",
    "make_folds",
    "parse_fold_numbers",
    "predefined",
    "speaker_overlap_problems",
    "split_fold",
    "split_summary",
]
