"""RAVDESS: the facts (8 emotions, license, citation) and the loader of its audio-only speech files.

Sources: the corpus record https://zenodo.org/record/1188976 (CC BY-NC-SA 4.0; the 7-part file-name identifiers:
modality, vocal channel, emotion 01..08, intensity, statement, repetition, actor 01..24 with odd = male and
even = female; 1440 audio-only speech files) and Livingstone & Russo (2018) for the citation. The paper does not
state a RAVDESS split: the default folds are this project's (configs/ravdess.yaml).
"""

import re
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusInfo, audio_files, build_dataset, drop_duplicates, warn_unmatched


LABEL_MAP = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
RAVDESS = CorpusInfo(
    name="ravdess",
    title="RAVDESS speech (8 emotions, 24 actors)",
    labels=tuple(LABEL_MAP.values()),
    license="cc-by-nc-sa-4.0",
    terms="RAVDESS is released under CC BY-NC-SA 4.0.",
    citation="Livingstone & Russo (2018), PLoS ONE 13(5): e0196391.",
    language="en",
    loader="ravdess",
    folds="leave_speakers_out",
    num_folds=6,
)

_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_ravdess(root: str | Path, include_song: bool = False) -> Dataset:
    """RAVDESS audio-only files `MM-VV-EE-II-SS-RR-AA.wav` (modality 03 = audio-only, vocal channel 01 = speech,
    02 = song; emotion EE 01..08; actor AA 01..24, odd = male, even = female). 8 classes, 1440 speech files.
    """
    root = Path(root).expanduser().resolve()
    rows, unmatched = [], []
    for path in audio_files(root):
        match = _NAME.match(path.stem)
        if match is None or match.group(1) != "03":
            unmatched.append(path)
            continue
        _, channel, emotion, _, _, _, actor = match.groups()
        if channel == "02" and not include_song:
            continue
        rows.append(
            {
                "audio": str(path),
                "label_text": LABEL_MAP.get(emotion, emotion),
                "speaker": actor,
                "gender": "male" if int(actor) % 2 else "female",
            }
        )
    rows = drop_duplicates("RAVDESS", rows, lambda row: Path(row["audio"]).stem)
    warn_unmatched("RAVDESS", unmatched, "03-VV-EE-II-SS-RR-AA.wav (audio-only)")
    if not rows:
        raise FileNotFoundError(f"{root}: no RAVDESS audio-only files (expected names like 03-01-05-01-02-01-12.wav).")
    return build_dataset(rows, RAVDESS.labels)


__all__ = ["LABEL_MAP", "RAVDESS", "load_ravdess"]
