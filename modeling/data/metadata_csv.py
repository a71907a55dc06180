"""The one reader of the CSV files users list audio in: a corpus's `metadata.csv` (train.py, score.py) and the file
lists of predict.py. Spreadsheets write them in many ways; all are read the same everywhere: UTF-8 with or without
a byte-order mark (Excel's "CSV UTF-8"), CRLF or LF line ends, `,`, `;` (European locales), tab or `|` as the
delimiter, the audio in a `file` or `file_name` column (🤗 audiofolder's name; predict.py also takes `path` /
`audio`), relative paths relative to the CSV's folder. Errors are `CorpusError`s naming the file and the row.
"""

import csv
import os
from pathlib import Path

from .corpus import CorpusError


DELIMITERS = ",;\t|"
FILE_COLUMNS = ("file", "file_name")  # ours, and 🤗 audiofolder's
PATH_COLUMNS = ("path", "audio")  # also accepted by predict.py's file lists


def read_metadata_csv(path: str | os.PathLike) -> tuple[list[str], list[tuple[int, dict]]]:
    """A spreadsheet's CSV → (header, [(row number as the spreadsheet shows it, {column: text})]).

    Raises `CorpusError` for undecodable text, an unknown delimiter, or rows whose field count differs from the
    header's (all such rows listed).
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # strips Excel's byte-order mark
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise CorpusError(
            f'{path}: row {line}: not UTF-8 text ({error.reason} at byte {error.start}); save it as "CSV UTF-8".'
        ) from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise CorpusError(f"{path}: empty file; expected a header like file,label,speaker.")
    delimiter = _delimiter(lines[0], path)
    records = list(csv.reader(lines, delimiter=delimiter))
    header = [name.strip() for name in records[0]]
    rows, problems = [], []
    for number, record in enumerate(records[1:], start=2):
        if not any(field.strip() for field in record):
            continue  # blank lines spreadsheets leave at the end
        if len(record) != len(header):
            problems.append(
                f"{path}: row {number}: {len(record)} field(s), the header has {len(header)} "
                f"({delimiter!r}-separated): {delimiter.join(record)!r}."
            )
            continue
        rows.append((number, {name: field.strip() for name, field in zip(header, record)}))
    if problems:
        raise CorpusError(f"{len(problems)} problem(s) in {path}:\n" + "\n".join(f"  - {p}" for p in problems))
    return header, rows


def _delimiter(header_line: str, path: Path) -> str:
    """The header's delimiter: the candidate that splits it into the most known columns (Sniffer as a tie-break)."""
    known = {*FILE_COLUMNS, *PATH_COLUMNS, "label", "speaker", "gender", "duration_s", "split"}
    scores = {d: len(known & {name.strip().lower() for name in header_line.split(d)}) for d in DELIMITERS}
    best = max(scores.values())
    if not any(d in header_line for d in DELIMITERS):
        return ","  # one column: no delimiter to tell
    if best == 0:
        try:
            return csv.Sniffer().sniff(header_line, delimiters=DELIMITERS).delimiter
        except csv.Error:
            raise CorpusError(
                f"{path}: row 1: cannot tell the delimiter of the header {header_line!r}; expected columns "
                "file,label[,speaker,gender,duration_s,split] separated by ',', ';', tab or '|'."
            ) from None
    return next(d for d in DELIMITERS if scores[d] == best)


def listed_path(csv_path: str | os.PathLike, value: str) -> str:
    """An audio path as a CSV lists it: relative paths are relative to the CSV's folder (normalised, not resolved)."""
    return os.path.normpath(os.path.join(os.path.dirname(os.fspath(csv_path)), os.path.expanduser(value)))


__all__ = ["DELIMITERS", "FILE_COLUMNS", "PATH_COLUMNS", "listed_path", "read_metadata_csv"]
