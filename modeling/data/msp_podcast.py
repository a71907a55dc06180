"""MSP-Podcast: the facts (categorical emotions, official partitions, license, citation) and the loader of its
release layout (`Audios/*.wav`, `Labels/labels_consensus.csv`).

Sources: the corpus page https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html and the
release's readme (partitions Train, Development, Test1, Test2, Test3; Test3's labels are hidden; speakers of the
Train set may be unknown), `labels_consensus.csv` (columns FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID,
Gender, Split_Set; EmoClass A angry, S sad, H happy, U surprise, F fear, D disgust, C contempt, N neutral, O other,
X no agreement), and Lotfian & Busso (2019) for the citation.

The official partitions are the folds (`data.folds: predefined`): the `split` column is `train` (Train),
`validation` (Development), `test` (the `test_partition`, Test1 by default), and the other partitions lowercased
(`test2`, `test3`: not used for training; score.py can score them with `--split test2`).
"""

import csv
import json
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusError, CorpusInfo, build_dataset, drop_duplicates, normalize_gender
from .votes import vote_distribution


EMOTIONS = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no_agreement",
}
CLASS_SETS = {
    4: ("neutral", "happy", "sad", "angry"),
    8: ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust", "contempt"),
}
MSP_PODCAST = CorpusInfo(
    name="msp_podcast",
    title="MSP-Podcast (naturalistic podcast speech; 4 classes neutral/happy/sad/angry; official partitions)",
    labels=CLASS_SETS[4],
    license="other",
    terms="MSP-Podcast is distributed by the MSP Lab of The University of Texas at Dallas under its academic "
    "license agreement; it is not redistributed here. Check that agreement before publishing weights.",
    citation="Lotfian, R., & Busso, C. (2019). Building naturalistic emotionally balanced speech corpus by retrieving "
    "emotional speech from existing podcast recordings. IEEE Transactions on Affective Computing 10(4), 471–483.",
    language="en",
    loader="msp_podcast",
    folds="predefined",
)
COLUMNS = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
SPLITS = {"Train": "train", "Development": "validation"}


# Annotators' primary emotions in the detailed labels (words, as `Angry`, or the consensus file's codes) → classes.
VOTE_LABEL_MAP = {
    **{name: name for names in CLASS_SETS.values() for name in names},
    **{code.lower(): name for code, name in EMOTIONS.items() if name not in ("other", "no_agreement")},
    "anger": "angry",
    "sadness": "sad",
    "happiness": "happy",
    "surprised": "surprise",
    "disgusted": "disgust",
}
DETAILED_FILES = ("labels_detailed.csv", "labels_detailed.json")


def read_detailed_votes(labels_dir: Path) -> dict[str, list[list[str]]]:
    """{FileName: one [primary emotion] per annotator} from the release's detailed labels, whichever is present:

    - `labels_detailed.csv` with `FileName,EmoClass_Major[,EmoClass_Second,EmoAct,EmoVal,EmoDom,...]`, one row per
      annotation (releases 1.6–1.10 and later CSVs);
    - `labels_detailed.csv` with `FileName,EmoDetail`, EmoDetail = `WORKER00014; Angry; Annoyed,Frustrated; A:4.0;
      V:2.0; D:5.0;` (release 1.11: worker; primary; secondary emotions; attributes);
    - `labels_detailed.json`: {FileName: {"Workers": [{"Name", "EmoClass_Major", ...}, ...]}} or {FileName: {worker:
      {"EmoClass_Major", ...}}}.

    Only the primary emotion (EmoClass_Major) votes; the secondary emotions are not used.
    Raises CorpusError naming the file for a CSV without those columns or a JSON of another shape.
    """
    path = next((labels_dir / name for name in DETAILED_FILES if (labels_dir / name).is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"{labels_dir}: no {' or '.join(DETAILED_FILES)}; label_distribution needs MSP-Podcast's detailed labels."
        )
    votes: dict[str, list[list[str]]] = {}
    if path.suffix == ".json":
        for name, entry in json.loads(path.read_text(encoding="utf-8")).items():
            workers = entry.get("Workers", entry) if isinstance(entry, dict) else entry
            workers = workers.values() if isinstance(workers, dict) else workers
            try:
                votes[name.strip()] = [[str(worker["EmoClass_Major"])] for worker in workers]
            except (KeyError, TypeError) as error:
                raise CorpusError(f"{path}: {name}: expected each worker's EmoClass_Major ({error!r}).") from error
        return votes
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "FileName" not in fields or not {"EmoClass_Major", "EmoDetail"} & set(fields):
            raise CorpusError(f"{path}: expected columns FileName and EmoClass_Major (or EmoDetail), got {fields}.")
        for row in reader:
            if "EmoClass_Major" in row:
                primary = row["EmoClass_Major"]
            else:
                parts = [part.strip() for part in (row["EmoDetail"] or "").split(";")]
                primary = parts[1] if len(parts) > 1 else ""
            votes.setdefault(row["FileName"].strip(), []).append([primary])
    return votes


def load_msp_podcast(
    root: str | Path, num_classes: int = 4, test_partition: str = "Test1", label_distribution: bool = False
) -> Dataset:
    """MSP-Podcast from `root/Labels/labels_consensus.csv` and `root/Audios/<FileName>`.

    Args:
        num_classes: 4 (neutral, happy, sad, angry; the usual protocol) or 8 (+ surprise, fear, disgust, contempt).
            Rows of other classes (O, X, or the 8-class ones with 4) are left out; so are rows without a label
            (Test3).
        test_partition: the `Split_Set` that becomes the `test` split (Test1, Test2, ...).
        label_distribution: add a `label_distribution` column from the annotators' primary emotions in
            `Labels/labels_detailed.{csv,json}` (`read_detailed_votes`; `modeling.data.votes.vote_distribution`:
            "Other" and classes outside `num_classes` are dropped; a file without detailed votes gets the one-hot of
            its consensus label).
    Speakers are `SpkrID` ("Unknown" stays "Unknown": such rows cannot be put in speaker folds, but the official
    partitions need none). Raises CorpusError naming the CSV for missing columns or an unknown `num_classes`.
    """
    if num_classes not in CLASS_SETS:
        raise CorpusError(f"msp_podcast: num_classes must be one of {sorted(CLASS_SETS)}, got {num_classes!r}.")
    root = Path(root).expanduser().resolve()
    labels_csv = root / "Labels" / "labels_consensus.csv"
    if not labels_csv.is_file():
        raise FileNotFoundError(
            f"{labels_csv}: not found; expected the MSP-Podcast layout Audios/*.wav + Labels/labels_consensus.csv."
        )
    with open(labels_csv, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = sorted(set(COLUMNS) - set(reader.fieldnames or []))
        if missing:
            raise CorpusError(f"{labels_csv}: missing column(s) {missing}; got {reader.fieldnames}.")
        table = list(reader)
    classes = CLASS_SETS[num_classes]
    splits = {**SPLITS, test_partition: "test"}
    rows = []
    for row in table:
        emotion = EMOTIONS.get(row["EmoClass"].strip(), "")
        if emotion not in classes:
            continue
        partition = row["Split_Set"].strip()
        rows.append(
            {
                "audio": str(root / "Audios" / row["FileName"].strip()),
                "label_text": emotion,
                "speaker": row["SpkrID"].strip() or "Unknown",
                "gender": normalize_gender(row["Gender"]),
                "split": splits.get(partition, partition.lower()),
                "file": row["FileName"].strip(),
            }
        )
    rows = drop_duplicates(str(labels_csv), rows, lambda row: row["file"])
    if not rows:
        raise CorpusError(f"{labels_csv}: no rows of the classes {list(classes)}.")
    if label_distribution:
        votes = read_detailed_votes(labels_csv.parent)
        for row in rows:
            row["label_distribution"] = vote_distribution(
                votes.get(row["file"], []), VOTE_LABEL_MAP, classes, row["label_text"]
            )
    return build_dataset(rows, classes)  # with the `split` column (rows carry their partition)


__all__ = ["CLASS_SETS", "EMOTIONS", "MSP_PODCAST", "VOTE_LABEL_MAP", "load_msp_podcast", "read_detailed_votes"]
