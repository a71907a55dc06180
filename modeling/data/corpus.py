"""What every corpus module shares: its facts (`CorpusInfo`), the corpus Dataset's columns, and row helpers.

A corpus Dataset has one row per utterance and the same columns whatever the source:

- `audio` (`string`): absolute path of the audio file (decode it with `modeling.audio.load_audio`; `datasets`'
  `Audio()` decoding needs torchcodec, see the docs). Hub datasets keep the `{"path", "bytes"}` dict instead.
- `label` (`ClassLabel`): the emotion; `-1` (datasets' "no label") where the source label is empty or not one of
  the expected classes, so that the dataset checks can report every such row at once. The ClassLabel's names are
  the label order: they become the model's `id2label`.
- `label_text` (`string`): the label as written in the source (e.g. `exc` for IEMOCAP's merged "happy").
- `speaker` (`string`), `gender` (`"female"`, `"male"` or `""` when unknown).
- `session` (`int32`): IEMOCAP session 1..5, `-1` elsewhere.
- `duration_s` (`float64`): seconds, from the file header (`None` when the file cannot be read); the name every file
  the project reads or writes gives it (metadata.csv, predictions, segments). Lengths are read through
  `modeling.data.audio_columns.audio_lengths`.
- `split` (`string`, only for corpora that come split): `train` / `validation` / `test` (`data.folds: predefined`).

Nothing here decodes audio or raises on bad files: `modeling.data.checks` does, listing every problem.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Sequence, Value

from ..audio import AudioInputError, audio_duration
from ..rundir.reader import close_names_hint
from .folds import FOLD_STRATEGIES


logger = logging.getLogger(__name__)

GENDERS = {"f": "female", "female": "female", "w": "female", "m": "male", "male": "male"}


class CorpusError(ValueError):
    """A corpus that cannot be read as asked (missing columns, unknown loader or speakers); names the source."""


@dataclass(frozen=True)
class CorpusInfo:
    """The facts of one corpus, read by its loader (the label set) and by the model cards (the rest).

    Each corpus module states where its facts come from (the corpus's own documentation).
    """

    name: str  # short name: the loader's name for a corpus with its own loader (`catalog.CORPORA`), else its folder's
    title: str  # how a model card names the corpus
    labels: tuple[str, ...]  # the classes in label-id order: the ClassLabel names and the model's id2label
    license: str  # the Hub's license id (https://huggingface.co/docs/hub/repositories-licenses)
    terms: str  # the license in words, as a model card states it before the citation
    citation: str  # the reference the corpus asks users to cite
    language: str  # ISO 639-1
    loader: str  # the `data.loader` that reads it
    folds: str  # the default fold strategy (`data.folds`, see modeling.data.folds)
    num_folds: int | None = None  # for leave_speakers_out: speaker groups (None: one speaker per fold)
    hub_id: str | None = None  # the dataset on the Hugging Face Hub, where there is one

    def __post_init__(self):
        if self.folds not in FOLD_STRATEGIES:
            raise ValueError(f"{self.name}: folds must be one of {FOLD_STRATEGIES}, got {self.folds!r}.")

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.labels))

    def card_fields(self) -> dict:
        """What a model card says about the corpus: name, hub_id, license, language, terms."""
        return {
            "name": self.title,
            "hub_id": self.hub_id,
            "license": self.license,
            "language": self.language,
            "terms": f"{self.terms} {self.citation}",
        }


def corpus_features(label_names: Iterable[str]) -> Features:
    return Features(
        {
            "audio": Value("string"),
            "label": ClassLabel(names=list(label_names)),
            "label_text": Value("string"),
            "speaker": Value("string"),
            "gender": Value("string"),
            "session": Value("int32"),
            "duration_s": Value("float64"),
        }
    )


def label_ids(texts: Iterable[str], label_names: Iterable[str]) -> list[int]:
    """Each text's index in `label_names` (its ClassLabel id), or -1 when it is not one of them."""
    index = {name: i for i, name in enumerate(label_names)}
    return [index.get(text, -1) for text in texts]


def build_dataset(rows: list[dict], label_names: Iterable[str]) -> Dataset:
    """Rows with `audio`, `label_text`, `speaker` (+ optional `gender`, `session`, `duration_s`) → a corpus Dataset.

    `label` is the index of `label_text` in `label_names`, or -1 when it is not one of them.
    """
    features = corpus_features(label_names)
    columns = {
        "audio": [row["audio"] for row in rows],
        "label": label_ids((row["label_text"] for row in rows), features["label"].names),
        "label_text": [row["label_text"] for row in rows],
        "speaker": [row["speaker"] for row in rows],
        "gender": [row.get("gender", "") for row in rows],
        "session": [row.get("session", -1) for row in rows],
        "duration_s": [
            row["duration_s"] if row.get("duration_s") is not None else _duration(row["audio"]) for row in rows
        ],
    }
    if any("label_distribution" in row for row in rows):  # annotator votes (modeling/data/votes.py)
        columns["label_distribution"] = [row.get("label_distribution") for row in rows]
        features["label_distribution"] = Sequence(Value("float64"))
    if any(row.get("split") for row in rows):  # the corpus's own train/validation/test (data.folds: predefined)
        columns["split"] = [row.get("split") or "" for row in rows]
        features["split"] = Value("string")
    return Dataset.from_dict(columns, features=features)


def _duration(path: str) -> float | None:
    try:
        return audio_duration(path)
    except (AudioInputError, OSError):
        return None  # reported by the dataset checks, with every other problem


def normalize_gender(value: str | None) -> str:
    return GENDERS.get((value or "").strip().lower(), "")


def audio_files(root: Path, extensions=(".wav",)) -> list[Path]:
    """Every audio file below `root` (recursively, sorted), hidden files left out."""
    if not root.is_dir():
        hint = close_names_hint(root)
        raise FileNotFoundError(f"{root}: corpus folder does not exist." + (f" {hint}" if hint else ""))
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and not p.name.startswith("."))


def match_files(root: Path, pattern) -> tuple[list[tuple[Path, tuple]], list[Path]]:
    """Audio files below `root` whose stem matches the compiled regex `pattern`: ([(path, groups)], unmatched)."""
    matched, unmatched = [], []
    for path in audio_files(root):
        match = pattern.match(path.stem)
        if match is None:
            unmatched.append(path)
        else:
            matched.append((path, match.groups()))
    return matched, unmatched


def warn_unmatched(corpus: str, unmatched: list[Path], convention: str):
    if unmatched:
        names = ", ".join(p.name for p in unmatched[:5])
        logger.warning(f"{corpus}: ignored {len(unmatched)} files not named {convention} (e.g. {names}).")


def drop_duplicates(corpus: str, rows: list[dict], recording_id) -> list[dict]:
    """One row per recording: rows with the same `recording_id(row)` (the corpus's own id, e.g. RAVDESS's file
    name) are the same recording found twice, typically an archive unpacked into a nested copy of itself
    (`Actor_01/Actor_01/...`). The row whose audio path is shortest (the outer copy) is kept, in the original row
    order; a warning gives the count and examples. Returns the kept rows.

    Before anything is dropped, the copies' labels (`label_text`) are compared: one recording with two labels is an
    error, whichever label is right (and a misspelled label in a copy would otherwise vanish unreported).

    Raises:
        CorpusError: recordings whose rows carry different labels; every such recording listed with its rows
            (`row["where"]`, e.g. "row 4" of a CSV, else its audio path) and their labels.
    """
    groups: dict = {}
    for row in rows:
        groups.setdefault(recording_id(row), []).append(row)
    if len(groups) == len(rows):
        return rows
    duplicated = {key: group for key, group in groups.items() if len(group) > 1}
    conflicts = [group for group in duplicated.values() if len({row.get("label_text") for row in group}) > 1]
    if conflicts:
        lines = [
            "; ".join(f"{row.get('where') or row['audio']}: {row['label_text']!r}" for row in group)
            for group in conflicts
        ]
        raise CorpusError(
            f"{corpus}: {len(conflicts)} recording(s) listed more than once with different labels (one recording "
            "has one label: correct or remove the wrong rows):\n" + "\n".join(f"  - {line}" for line in lines)
        )
    keep = {id(min(group, key=lambda row: (len(str(row["audio"])), str(row["audio"])))) for group in groups.values()}
    examples = "; ".join(
        f"{key}: {', '.join(str(r['audio']) for r in group[:2])}" for key, group in list(duplicated.items())[:3]
    )
    logger.warning(
        f"{corpus}: {len(rows) - len(groups)} duplicate file(s) of {len(duplicated)} recording(s) found and loaded "
        f"once, with the same label (e.g. {examples}). A nested copy of the corpus folder, or a copied label or "
        "metadata file, is the usual cause."
    )
    return [row for row in rows if id(row) in keep]


def select_speakers(
    dataset: Dataset, speakers: Iterable[str] | None = None, max_per_speaker: int | None = None
) -> Dataset:
    """Keep `speakers` only (in any order) and at most `max_per_speaker` rows of each, classes interleaved
    (row i of class a, row i of class b, ...) so that a small subset stays balanced. Deterministic.
    """
    speaker_column = dataset["speaker"]
    if speakers is not None:
        speakers = set(speakers)
        unknown = speakers - set(speaker_column)
        if unknown:
            raise CorpusError(
                f"data.speakers: {sorted(unknown)} not in the corpus (it has {sorted(set(speaker_column))})."
            )
    by_speaker_label: dict[str, dict[int, list[int]]] = {}
    for i, (speaker, label) in enumerate(zip(speaker_column, dataset["label"])):
        if speakers is None or speaker in speakers:
            by_speaker_label.setdefault(speaker, {}).setdefault(label, []).append(i)
    keep = []
    for speaker in sorted(by_speaker_label):
        groups = [by_speaker_label[speaker][label] for label in sorted(by_speaker_label[speaker])]
        interleaved = [group[rank] for rank in range(max(map(len, groups))) for group in groups if rank < len(group)]
        keep += interleaved[:max_per_speaker] if max_per_speaker else interleaved
    return dataset.select(sorted(keep))


__all__ = [
    "CorpusError",
    "CorpusInfo",
    "audio_files",
    "build_dataset",
    "corpus_features",
    "drop_duplicates",
    "label_ids",
    "match_files",
    "normalize_gender",
    "select_speakers",
    "warn_unmatched",
]
