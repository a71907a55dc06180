"""Per-utterance predictions as CSV: `predictions_<split>.csv` of a fold (train.py) and `predictions.csv` of
score.py. One row per utterance, in the split's row order:

    file,speaker,label,predicted,prob_<class 1>,...,prob_<class C>

`file` is relative to the corpus root (`data.root`) when the audio lies under it (else as the corpus gave it),
`label` (the truth) and `predicted` are class names, `prob_<class>` the softmax of the model's logits (or, for an
ensemble, the mean of the members' softmax outputs): the names of `modeling.prediction_fields`, the one owner of the
predictions vocabulary. Extra leading columns (`model` in score.py: fold<k> or ensemble) are allowed.
"""

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..prediction_fields import LABEL, PREDICTED, PROBABILITY_PREFIX, probability_fields


COLUMNS = ("file", "speaker", LABEL, PREDICTED)  # then prob_<class> per class


def relative_file(audio, root: str | os.PathLike | None) -> str:
    """The audio of a corpus row (a path, or a Hub `{"path", "bytes"}` dict) relative to `root` where it lies under
    it (as spelled, or once links are resolved: a corpus whose audio folder is a symbolic link still gets
    `audio/x.wav`); otherwise its path as given."""
    path = audio.get("path") or "" if isinstance(audio, dict) else str(audio)
    if root and path:
        root = os.path.expanduser(root)
        for file, folder in (
            (os.path.abspath(path), os.path.abspath(root)),
            (Path(path).resolve(), Path(root).resolve()),
        ):
            try:
                return Path(file).relative_to(folder).as_posix()
            except ValueError:
                pass
    return path


@dataclass
class Predictions:
    """Per-utterance predictions: files (N,), speakers (N,), true label ids (N,), probabilities (N, C), classes."""

    files: list[str]
    speakers: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    classes: list[str]
    extra: dict[str, list] | None = None  # leading columns, e.g. {"model": [...]}
    predicted_ids: np.ndarray | None = None  # as written (read back from a CSV); else the argmax

    @property
    def predicted(self) -> np.ndarray:
        """(N,) predicted class ids: the `predicted` column when read from a CSV (probabilities there are rounded),
        otherwise the argmax of the probabilities."""
        return self.probabilities.argmax(axis=-1) if self.predicted_ids is None else self.predicted_ids

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == self.labels


def predictions_csv(predictions: Predictions) -> str:
    """`predictions` as CSV text (the header above; probabilities with 6 decimals). Write it with
    `modeling.rundir.atomic.atomic_write_text`."""
    extra = predictions.extra or {}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*extra, *COLUMNS, *probability_fields(predictions.classes)])
    for i, file in enumerate(predictions.files):
        probabilities = [f"{p:.6f}" for p in predictions.probabilities[i]]
        writer.writerow(
            [
                *(column[i] for column in extra.values()),
                file,
                predictions.speakers[i],
                predictions.classes[predictions.labels[i]],
                predictions.classes[predictions.predicted[i]],
                *probabilities,
            ]
        )
    return buffer.getvalue()


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read a predictions CSV back (label ids index the `prob_` columns' classes). Raises ValueError naming the
    file and the row for a label that is not one of those classes."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        classes = [name[len(PROBABILITY_PREFIX) :] for name in fields if name.startswith(PROBABILITY_PREFIX)]
        missing = set(COLUMNS) - set(fields)
        if missing or not classes:
            raise ValueError(f"{path}: not a predictions CSV (missing {sorted(missing) or 'prob_<class> columns'}).")
        leading = fields[: fields.index("file")]
        rows = list(reader)
    index = {name: i for i, name in enumerate(classes)}
    unknown = [(n + 2, row[key]) for n, row in enumerate(rows) for key in (LABEL, PREDICTED) if row[key] not in index]
    if unknown:
        raise ValueError(f"{path}: (line, label) {unknown[:5]} outside the classes {classes}.")
    return Predictions(
        files=[row["file"] for row in rows],
        speakers=[row["speaker"] for row in rows],
        labels=np.array([index[row[LABEL]] for row in rows], dtype=np.int64),
        probabilities=np.array([[float(row[PROBABILITY_PREFIX + c]) for c in classes] for row in rows]).reshape(
            len(rows), len(classes)
        ),
        classes=classes,
        extra={name: [row[name] for row in rows] for name in leading} or None,
        predicted_ids=np.array([index[row[PREDICTED]] for row in rows], dtype=np.int64),
    )


__all__ = ["COLUMNS", "Predictions", "read_predictions", "relative_file", "predictions_csv"]
