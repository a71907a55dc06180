"""Your own corpus, or one the project reads as a folder (polish3, nemo4): `metadata.csv`, or label sub-folders,
optionally under split folders (`train/`, `validation/`, `test/`) as in 🤗 datasets' audiofolder.

Generic: the facts of the audio-folder corpora the project knows live in their own modules (`polish3`, `nemo4`).
`metadata.csv` is read as spreadsheet programs write it (`metadata_csv.read_metadata_csv`, also predict.py's reader):
UTF-8 with or without a byte-order mark (Excel's "CSV UTF-8"), CRLF or LF line ends, and `,`, `;` (European
locales), tab or `|` as the delimiter.
"""

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset

from ..audio import AUDIO_EXTENSIONS
from .corpus import CorpusError, audio_files, build_dataset, drop_duplicates, normalize_gender
from .folds import canonical_split
from .metadata_csv import FILE_COLUMNS, read_metadata_csv
from .votes import distribution_from_cell


def load_audio_folder(
    root: str | Path,
    labels: Iterable[str] | None = None,
    metadata: str = "metadata.csv",
    speaker_regex: str | None = None,
    label_column: str = "label",
    speaker_column: str | None = None,
    gender_column: str | None = None,
    label_distribution: bool = False,
    distribution_column: str = "label_distribution",
) -> Dataset:
    """Your own corpus: a folder with `metadata.csv`, or `<label>/<file>` sub-folders.

    Args:
        root: the corpus folder. When it has no `metadata` file but split folders (`train`, `validation` (or
            `valid`, `val`, `dev`), `test`), each is read the same way and its rows get that `split`
            (`data.folds: predefined`).
        labels: the expected classes, in order (the model's label ids). Rows with other labels get `label = -1`
            and are reported by the dataset checks. Default: the sorted non-empty labels found.
        metadata: CSV in `root` with columns `file` (or `file_name`; relative to the CSV's folder, or absolute)
            and `label`, optionally `speaker` (needed by the speaker folds), `gender`, `duration_s` and `split`.
            Without it, every `<root>/<label>/<file>.{wav,flac,ogg,mp3}` is an example.
        speaker_regex: for sub-folder corpora, a regular expression whose first group, searched in the file name,
            is the speaker (e.g. `"^([a-z]+\\d+)_"`); without it speakers are unknown (no speaker folds).
        label_column, speaker_column, gender_column: the metadata's columns with the label, the speaker and the
            gender (default `label`, and `speaker` / `gender` when present); a column named explicitly must exist.
        label_distribution: read soft labels from the metadata's `distribution_column` into a
            `label_distribution` column: per row a JSON list of C probabilities in label order (`"[0.5, 0.5, 0]"`)
            or a JSON mapping `{"anger": 0.5, "fear": 0.5}` (`modeling.data.votes.distribution_from_cell`).
    Raises:
        CorpusError: an unreadable `metadata.csv` (every bad row named: file, row number, problem), a named column it
            lacks, or columns named for a folder of label sub-folders (which has none).
        FileNotFoundError: neither metadata, label sub-folders nor split folders.
    """
    root = Path(root).expanduser().resolve()
    columns = {"label": label_column, "speaker": speaker_column, "gender": gender_column}
    columns["distribution"] = distribution_column if label_distribution else None
    split_dirs = {} if (root / metadata).is_file() else split_folders(root)
    if split_dirs:
        rows = []
        for split, folder in split_dirs.items():
            rows += [{**row, "split": split} for row in _rows_of_folder(folder, metadata, speaker_regex, columns)]
    else:
        rows = _rows_of_folder(root, metadata, speaker_regex, columns)
    if labels is None:
        labels = sorted({row["label_text"] for row in rows if row["label_text"]})
    if label_distribution:
        rows = with_distributions(rows, list(labels), distribution_column, str(root / metadata))
    return build_dataset(rows, labels)


def with_distributions(rows: list[dict], labels: list[str], column: str, source: str) -> list[dict]:
    """`rows` with `label_distribution` parsed from each row's raw `column` value (see `distribution_from_cell`).

    Raises:
        CorpusError: the column is missing, or values that cannot be read (every such row listed).
    """
    if rows and all(row.get("raw_distribution", _MISSING) is _MISSING for row in rows):
        raise CorpusError(f"{source}: no column {column!r} (label_distribution); its rows have no soft labels.")
    problems = []
    for row in rows:
        distribution, problem = distribution_from_cell(row.pop("raw_distribution", None), labels)
        row["label_distribution"] = distribution
        if problem:
            problems.append(f"{source}: {row.get('where') or row['audio']}: {column}: {problem}.")
    if problems:
        raise CorpusError(f"{len(problems)} problem(s) in {source}:\n" + "\n".join(f"  - {p}" for p in problems))
    return rows


_MISSING = object()


def split_folders(root: Path) -> dict[str, Path]:
    """{"train": root/train, "validation": root/dev, ...} for the split sub-folders of `root` (none: {})."""
    if not root.is_dir():
        return {}
    found = {}
    for child in sorted(root.iterdir()):
        split = canonical_split(child.name) if child.is_dir() else None
        if split and split not in found:
            found[split] = child
    return found if "train" in found else {}


def _rows_of_folder(root: Path, metadata: str, speaker_regex: str | None, columns: dict) -> list[dict]:
    """The rows of one folder (the corpus, or one of its split folders); a recording found twice is kept once."""
    metadata_path = root / metadata
    if metadata_path.is_file():  # a file listed twice is one recording
        rows = _rows_from_metadata(root, metadata_path, columns)
        return drop_duplicates(str(metadata_path), rows, lambda row: row["audio"])
    named = {
        f"{key}_column": value
        for key, value in columns.items()
        if value not in (None, "label") and key != "distribution"
    }
    if named:
        raise CorpusError(f"{root}: {named} name metadata columns, but the folder has no {metadata} (label folders).")
    rows = _rows_from_label_folders(root, speaker_regex)
    return drop_duplicates(str(root), rows, _folder_recording_ids(rows))


def _rows_from_metadata(root: Path, metadata_path: Path, columns: dict) -> list[dict]:
    header, records = read_metadata_csv(metadata_path)
    file_column = next((name for name in FILE_COLUMNS if name in header), None)
    label_column = columns["label"]
    if label_column != "label" and label_column not in header:  # named by the user: say which option
        raise CorpusError(f"{metadata_path}: row 1: no column {label_column!r} (label_column); its columns: {header}.")
    missing = ([] if file_column else ["file"]) + ([] if label_column in header else [label_column])
    if missing:
        raise CorpusError(
            f"{metadata_path}: row 1: missing column(s) {missing}; expected a header with "
            f"file,{label_column}[,speaker,gender,duration_s,split], got {header}."
        )
    named = {key: columns[key] or key for key in ("speaker", "gender")}
    for key, column in named.items():
        if columns[key] and column not in header:
            raise CorpusError(f"{metadata_path}: row 1: no column {column!r} ({key}_column); its columns: {header}.")
    rows, problems = [], []
    for number, record in records:
        if not record[file_column]:
            problems.append(f"{metadata_path}: row {number}: empty {file_column!r}.")
            continue
        row = {
            "where": f"row {number}",
            "audio": os.path.normpath(root / record[file_column]),  # links kept: the corpus's own names
            "label_text": record[label_column],
            "speaker": record.get(named["speaker"], ""),
            "gender": normalize_gender(record.get(named["gender"])),
            "duration_s": _float_or_none(record.get("duration_s")),  # None: read from the file header
        }
        if record.get("split"):
            row["split"] = canonical_split(record["split"]) or record["split"]
        if columns.get("distribution") and columns["distribution"] in record:
            row["raw_distribution"] = record[columns["distribution"]]
        rows.append(row)
    if problems:
        raise CorpusError(
            f"{len(problems)} problem(s) in {metadata_path}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    if not rows:
        raise CorpusError(f"{metadata_path}: has a header but no rows.")
    return rows


def _folder_recording_ids(rows: list[dict]):
    """Recording ids of label-folder rows: a file is a copy of another when it has the same name and bytes
    (`anger/a.wav` and `anger/anger/a.wav`, or the same take filed under two labels, which `drop_duplicates`
    refuses); files named alike with other bytes stay distinct. Only files whose name repeats are hashed."""
    names = Counter(Path(row["audio"]).name for row in rows)

    def recording_id(row: dict):
        name = Path(row["audio"]).name
        if names[name] == 1:
            return (name,)
        return (name, hashlib.sha1(Path(row["audio"]).read_bytes()).hexdigest())

    return recording_id


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text.replace(",", ".")) if text else None  # 1,5 from a European spreadsheet
    except (TypeError, ValueError):
        return None


def _rows_from_label_folders(root: Path, speaker_regex: str | None) -> list[dict]:
    pattern = re.compile(speaker_regex) if speaker_regex else None
    rows = []
    for path in audio_files(root, AUDIO_EXTENSIONS):
        if path.parent == root:
            continue
        match = pattern.search(path.name) if pattern else None
        rows.append(
            {
                "audio": str(path),
                "label_text": path.relative_to(root).parts[0],
                "speaker": match.group(1) if match else "",
            }
        )
    if not rows:
        raise FileNotFoundError(
            f"{root}: no metadata.csv and no <label>/<file>.{{wav,flac,ogg,mp3}} sub-folders; expected one of them."
        )
    return rows


__all__ = ["load_audio_folder", "read_metadata_csv", "split_folders"]
