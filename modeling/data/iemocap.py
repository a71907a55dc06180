"""IEMOCAP: the facts (4-class protocol, license, citation) and the loader of the official release layout.

Sources: the corpus page https://sail.usc.edu/iemocap/ (release, license agreement, the `EmoEvaluation` label files
and their codes), Busso et al. (2008) for the citation, and Byun & Lee (2025), Table 1, for the 4-class protocol
(excited merged into happy; leave one session out, its male speaker validation, its female speaker test).
"""

import re
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusInfo, build_dataset, drop_duplicates, normalize_gender
from .votes import vote_distribution


IEMOCAP = CorpusInfo(
    name="iemocap",
    title="IEMOCAP (4 classes: neutral, happy+excited, sad, angry; leave-one-session-out)",
    labels=("neutral", "happy", "sad", "angry"),
    license="other",
    terms="IEMOCAP is distributed by USC SAIL under its own license agreement; it is not redistributed here. "
    "Check that agreement before using these weights.",
    citation="Busso et al. (2008), IEMOCAP: Interactive emotional dyadic motion capture database, Language Resources "
    "and Evaluation 42, 335–359.",
    language="en",
    loader="iemocap",
    folds="leave_one_session_out",
)
LABEL_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
# The evaluators' words on the `C-` lines (the release's categories: Neutral (state), Happiness, Excited, Sadness,
# Anger, Frustration, Surprise, Fear, Disgust, Other) → the 4 classes; the others are outside them.
EVALUATOR_LABEL_MAP = {
    "neutral": "neutral",
    "neutral state": "neutral",
    "happiness": "happy",
    "happy": "happy",
    "excited": "happy",
    "sadness": "sad",
    "sad": "sad",
    "anger": "angry",
    "angry": "angry",
}

# `[140.2250 - 145.6000]<TAB>Ses01F_impro05_F019<TAB>ang<TAB>[1.5000, 4.0000, 4.5000]`
_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\d\d[FM]_\S+_([FM])\d+)\s+(\S+)\s+\[")
# `C-E1:<TAB>Neutral state;<TAB>Frustration;<TAB>(comment)`: one evaluator's categorical labels for the utterance above
_EVALUATOR_LINE = re.compile(r"^C-([A-Za-z]+\d*):(.*)$")


def evaluator_labels(line: str) -> tuple[str, list[str]] | None:
    """(evaluator, labels) of a `C-` line (`C-E1:\tNeutral state;\tFrustration;\t()` → ("E1", ["Neutral state",
    "Frustration"])); the trailing parenthesised comment is not a label. None for other lines."""
    match = _EVALUATOR_LINE.match(line.strip())
    if match is None:
        return None
    text = re.sub(r"\([^()]*\)\s*$", "", match.group(2))
    return match.group(1), [label.strip() for label in text.split(";") if label.strip()]


def load_iemocap(root: str | Path, label_distribution: bool = False) -> Dataset:
    """IEMOCAP (official `IEMOCAP_full_release` layout), 4 classes: neutral, happy (+ excited), sad, angry.

    Labels come from `Session{1..5}/dialog/EmoEvaluation/*.txt` (top-level files; the `Categorical/`,
    `Attribute/`, `Self-evaluation/` sub-folders are ignored). With `label_distribution`, the evaluators' `C-` lines
    under each utterance (every `C-<evaluator>:` line, one vote each, several labels sharing it) give a
    `label_distribution` column over the 4 classes (`modeling.data.votes.vote_distribution`: Excited counts as
    happy, Frustration / Surprise / Fear / Disgust / Other are outside the classes). Audio is
    `Session{s}/sentences/wav/{dialog}/{utterance}.wav`. The speaker is the session plus the gender letter of the
    utterance's last part: `Ses01F_impro05_M013` is spoken by `Ses01M`. On the full corpus: 5531 utterances.
    """
    root = Path(root).expanduser().resolve()
    label_files = sorted(
        path
        for session in range(1, 6)
        for path in (root / f"Session{session}" / "dialog" / "EmoEvaluation").glob("*.txt")
        if not path.name.startswith(".")
    )
    if not label_files:
        raise FileNotFoundError(
            f"{root}: no IEMOCAP label files. Expected the official layout "
            "Session{1..5}/dialog/EmoEvaluation/*.txt (the IEMOCAP_full_release folder)."
        )
    rows = []
    for path in label_files:
        current = None  # the row the evaluator lines below belong to
        for line in path.read_text(errors="replace").splitlines():
            votes = evaluator_labels(line) if current is not None else None
            if votes is not None:
                current["votes"].append(votes[1])
                continue
            match = _LINE.match(line)
            current = None
            if match is None or match.group(3) not in LABEL_MAP:
                continue
            utterance, gender_letter, emotion = match.groups()
            session = int(utterance[3:5])
            dialog = utterance.rsplit("_", 1)[0]
            rows.append(
                {
                    "audio": str(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav"),
                    "label_text": LABEL_MAP[emotion],
                    "speaker": utterance[:5] + gender_letter,
                    "gender": normalize_gender(gender_letter),
                    "session": session,
                    "utterance": utterance,
                    "votes": [],
                }
            )
            current = rows[-1]
    rows = drop_duplicates("IEMOCAP", rows, lambda row: row["utterance"])  # an utterance labelled in two files
    if label_distribution:
        for row in rows:
            row["label_distribution"] = vote_distribution(
                row["votes"], EVALUATOR_LABEL_MAP, IEMOCAP.labels, row["label_text"]
            )
    return build_dataset(sorted(rows, key=lambda row: row["utterance"]), IEMOCAP.labels)


__all__ = ["EVALUATOR_LABEL_MAP", "IEMOCAP", "LABEL_MAP", "evaluator_labels", "load_iemocap"]
