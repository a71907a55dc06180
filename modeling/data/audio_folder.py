"""Your own corpus, or one the project reads as a folder (polish3, nemo4): `metadata.csv`, or label sub-folders.

Generic: the facts of the audio-folder corpora the project knows live in their own modules (`polish3`, `nemo4`).
"""

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusError, audio_files, build_dataset, drop_duplicates, normalize_gender


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


def load_audio_folder(
    root: str | Path,
    labels: Iterable[str] | None = None,
    metadata: str = "metadata.csv",
    speaker_regex: str | None = None,
) -> Dataset:
    """Your own corpus: a folder with `metadata.csv`, or `<label>/<file>` sub-folders.

    Args:
        root: the corpus folder.
        labels: the expected classes, in order (the model's label ids). Rows with other labels get `label = -1`
            and are reported by the dataset checks. Default: the sorted non-empty labels found.
        metadata: CSV in `root` with columns `file` (relative to `root`, or absolute), `label`, `speaker`, and
            optionally `gender` and `duration_s`. Without it, every `<root>/<label>/<file>.{wav,flac,ogg,mp3}`
            is an example.
        speaker_regex: for sub-folder corpora, a regular expression whose first group, searched in the file name,
            is the speaker (e.g. `"^([a-z]+\\d+)_"`); without it speakers are unknown (no speaker folds).
    """
    root = Path(root).expanduser().resolve()
    metadata_path = root / metadata
    if metadata_path.is_file():  # a file listed twice is one recording
        rows = drop_duplicates(str(metadata_path), _rows_from_metadata(root, metadata_path), lambda row: row["audio"])
    else:
        rows = _rows_from_label_folders(root, speaker_regex)
        rows = drop_duplicates(str(root), rows, _folder_recording_ids(rows))
    if labels is None:
        labels = sorted({row["label_text"] for row in rows if row["label_text"]})
    return build_dataset(rows, labels)


def _rows_from_metadata(root: Path, metadata_path: Path) -> list[dict]:
    with open(metadata_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"file", "label", "speaker"} - set(reader.fieldnames or [])
        if missing:
            raise CorpusError(
                f"{metadata_path}: missing column(s) {sorted(missing)}; expected a header with "
                f"file,label,speaker[,gender,duration_s], got {reader.fieldnames}."
            )
        rows = []
        for row in reader:
            rows.append(
                {
                    "audio": str((root / row["file"].strip()).resolve()),
                    "label_text": (row["label"] or "").strip(),
                    "speaker": (row["speaker"] or "").strip(),
                    "gender": normalize_gender(row.get("gender")),
                    "duration": _float_or_none(row.get("duration_s")),  # None: read from the file header
                }
            )
    if not rows:
        raise CorpusError(f"{metadata_path}: has a header but no rows.")
    return rows


def _folder_recording_ids(rows: list[dict]):
    """Recording ids of label-folder rows: a file is a copy of another when it has the same label, name and bytes
    (`anger/a.wav` and `anger/anger/a.wav`); files named alike in other folders with other bytes stay distinct.
    Only files whose (label, name) repeats are hashed."""
    names = Counter((row["label_text"], Path(row["audio"]).name) for row in rows)

    def recording_id(row: dict):
        key = (row["label_text"], Path(row["audio"]).name)
        if names[key] == 1:
            return key
        return (*key, hashlib.sha1(Path(row["audio"]).read_bytes()).hexdigest())

    return recording_id


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text)
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


__all__ = ["AUDIO_EXTENSIONS", "load_audio_folder"]
