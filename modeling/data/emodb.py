"""EmoDB (Berlin Database of Emotional Speech): the facts (7 emotions, 10 speakers) and the loader of its release.

Sources: Burkhardt et al. (2005), the corpus page http://emodb.bilderbar.info (the file-name code
`<speaker><text><emotion><version>.wav`, e.g. `03a01Fa.wav` = speaker 03, text a01, emotion F, version a; emotion
letters from the German names: W Ärger/anger, L Langeweile/boredom, E Ekel/disgust, A Angst/fear,
F Freude/happiness, T Trauer/sadness, N neutral; 535 utterances; speakers 03, 10, 11, 12, 15 male and
08, 09, 13, 14, 16 female). The default folds are leave-one-speaker-out (speaker-independent, 10 folds).
"""

import re
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusInfo, build_dataset, drop_duplicates, match_files, warn_unmatched


LABEL_MAP = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
MALE_SPEAKERS = ("03", "10", "11", "12", "15")
FEMALE_SPEAKERS = ("08", "09", "13", "14", "16")
NUM_UTTERANCES = 535
EMODB = CorpusInfo(
    name="emodb",
    title="EmoDB, Berlin Database of Emotional Speech (German, 7 emotions, 10 speakers)",
    labels=tuple(LABEL_MAP.values()),
    license="other",
    terms="EmoDB is distributed by its authors (http://emodb.bilderbar.info) for research; it is not "
    "redistributed here. Check its terms before publishing weights trained on it.",
    citation="Burkhardt, F., Paeschke, A., Rolfes, M., Sendlmeier, W., & Weiss, B. (2005). A database of German "
    "emotional speech. Proc. Interspeech 2005, 1517–1520.",
    language="de",
    loader="emodb",
    folds="leave_speakers_out",
)

_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")


def load_emodb(root: str | Path) -> Dataset:
    """EmoDB's `wav/<speaker><text><emotion><version>.wav` files (found anywhere below `root`): 7 classes
    (anger, boredom, disgust, fear, happiness, sadness, neutral), speakers 03..16 with their genders.
    On the full release: 535 utterances. A file found twice (a nested copy) is loaded once, with a warning."""
    root = Path(root).expanduser().resolve()
    genders = {**{s: "male" for s in MALE_SPEAKERS}, **{s: "female" for s in FEMALE_SPEAKERS}}
    matched, unmatched = match_files(root, _NAME)
    rows = [
        {"audio": str(path), "label_text": LABEL_MAP[emotion], "speaker": speaker, "gender": genders.get(speaker, "")}
        for path, (speaker, _, emotion, _) in matched
    ]
    rows = drop_duplicates("EmoDB", rows, lambda row: Path(row["audio"]).stem)
    warn_unmatched("EmoDB", unmatched, "<speaker><text><emotion><version>.wav (e.g. 03a01Fa.wav)")
    if not rows:
        raise FileNotFoundError(f"{root}: no EmoDB files (expected wav/03a01Fa.wav-style names).")
    return build_dataset(rows, EMODB.labels)


__all__ = ["EMODB", "FEMALE_SPEAKERS", "LABEL_MAP", "MALE_SPEAKERS", "NUM_UTTERANCES", "load_emodb"]
