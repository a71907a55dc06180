"""CREMA-D: the facts (6 emotions, license, citation) and the loader of its `AudioWAV` file names.

Sources: the corpus repository https://github.com/CheyneyComputerScience/CREMA-D (README: the file-name convention
`{actor}_{sentence}_{emotion}_{level}`, the emotion codes ANG/DIS/FEA/HAP/NEU/SAD, 91 actors and
`VideoDemographics.csv`; LICENSE.txt: ODbL with the Database Contents License) and Cao et al. (2014) for the
citation. The paper does not state a CREMA-D split: the default folds are this project's (configs/crema_d.yaml).
"""

import csv
import re
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusInfo, audio_files, build_dataset, drop_duplicates, normalize_gender, warn_unmatched


LABEL_MAP = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fear", "DIS": "disgust"}
CREMA_D = CorpusInfo(
    name="crema_d",
    title="CREMA-D (6 emotions, 91 actors)",
    labels=tuple(LABEL_MAP.values()),
    license="odbl",
    terms="CREMA-D is released under the Open Database License (ODbL) with the Database Contents License.",
    citation="Cao et al. (2014), CREMA-D: Crowd-sourced emotional multimodal actors dataset, IEEE TAC 5(4).",
    language="en",
    loader="crema_d",
    folds="leave_speakers_out",
    num_folds=5,
)

_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")


def load_crema_d(root: str | Path, demographics: str | Path | None = None) -> Dataset:
    """CREMA-D: `{actor}_{sentence}_{emotion}_{level}.wav` (e.g. `1001_DFA_ANG_XX.wav`), 6 classes, 91 actors.

    Gender comes from `VideoDemographics.csv` (`ActorID`, `Sex`) when it is found in `root`, its parent, or at
    `demographics`; otherwise it is left empty.
    """
    root = Path(root).expanduser().resolve()
    genders = _genders(root, demographics)
    rows, unmatched = [], []
    for path in audio_files(root):
        match = _NAME.match(path.stem)
        if match is None:
            unmatched.append(path)
            continue
        actor, _, emotion, _ = match.groups()
        rows.append(
            {
                "audio": str(path),
                "label_text": LABEL_MAP.get(emotion, emotion),
                "speaker": actor,
                "gender": genders.get(actor, ""),
            }
        )
    rows = drop_duplicates("CREMA-D", rows, lambda row: Path(row["audio"]).stem)
    warn_unmatched("CREMA-D", unmatched, "ACTOR_SENTENCE_EMOTION_LEVEL.wav")
    if not rows:
        raise FileNotFoundError(f"{root}: no CREMA-D files (expected names like 1001_DFA_ANG_XX.wav).")
    return build_dataset(rows, CREMA_D.labels)


def _genders(root: Path, demographics: str | Path | None) -> dict[str, str]:
    candidates = (
        [Path(demographics)]
        if demographics
        else [root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"]
    )
    for path in candidates:
        if path.is_file():
            with open(path, newline="") as f:
                return {row["ActorID"].strip(): normalize_gender(row.get("Sex")) for row in csv.DictReader(f)}
    return {}


__all__ = ["CREMA_D", "LABEL_MAP", "load_crema_d"]
