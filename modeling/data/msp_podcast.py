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
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusError, CorpusInfo, build_dataset, drop_duplicates, normalize_gender


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


def load_msp_podcast(root: str | Path, num_classes: int = 4, test_partition: str = "Test1") -> Dataset:
    """MSP-Podcast from `root/Labels/labels_consensus.csv` and `root/Audios/<FileName>`.

    Args:
        num_classes: 4 (neutral, happy, sad, angry; the usual protocol) or 8 (+ surprise, fear, disgust, contempt).
            Rows of other classes (O, X, or the 8-class ones with 4) are left out; so are rows without a label
            (Test3).
        test_partition: the `Split_Set` that becomes the `test` split (Test1, Test2, ...).
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
    return build_dataset(rows, classes)  # with the `split` column (rows carry their partition)


__all__ = ["CLASS_SETS", "EMOTIONS", "MSP_PODCAST", "load_msp_podcast"]
