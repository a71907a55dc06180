"""Speech emotion corpora → one `datasets.Dataset` row per utterance.

Every loader returns the same columns:

- `audio` (`string`): absolute path of the audio file (decode it with `modeling.audio.load_audio`; `datasets`'
  `Audio()` decoding needs torchcodec, see the docs). Hub datasets keep the `{"path", "bytes"}` dict instead.
- `label` (`ClassLabel`): the emotion; `-1` (datasets' "no label") where the source label is empty or not one of
  the expected classes, so that the dataset checks can report every such row at once.
- `label_text` (`string`): the label as written in the source (e.g. `exc` for IEMOCAP's merged "happy").
- `speaker` (`string`), `gender` (`"female"`, `"male"` or `""` when unknown).
- `session` (`int32`): IEMOCAP session 1..5, `-1` elsewhere.
- `duration` (`float64`): seconds, from the file header (`None` when the file cannot be read).

Nothing here decodes audio or raises on bad files: `modeling.data.checks` does, listing every problem.
"""

import csv
import inspect
import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import soundfile as sf
from datasets import ClassLabel, Dataset, Features, Value

from ..audio import AudioInputError, audio_duration


logger = logging.getLogger(__name__)


class CorpusError(ValueError):
    """A corpus that cannot be read as asked (missing columns, unknown loader or speakers); names the source."""

IEMOCAP_LABELS = ("neutral", "happy", "sad", "angry")
IEMOCAP_LABEL_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
CREMA_D_LABEL_MAP = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fear", "DIS": "disgust"}
CREMA_D_LABELS = tuple(CREMA_D_LABEL_MAP.values())
RAVDESS_LABEL_MAP = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprise",
}
RAVDESS_LABELS = tuple(RAVDESS_LABEL_MAP.values())
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
GENDERS = {"f": "female", "female": "female", "w": "female", "m": "male", "male": "male"}

# `[140.2250 - 145.6000]<TAB>Ses01F_impro05_F019<TAB>ang<TAB>[1.5000, 4.0000, 4.5000]`
_IEMOCAP_LINE = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses\d\d[FM]_\S+_([FM])\d+)\s+(\S+)\s+\[")
_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def corpus_features(label_names: Iterable[str]) -> Features:
    return Features(
        {
            "audio": Value("string"),
            "label": ClassLabel(names=list(label_names)),
            "label_text": Value("string"),
            "speaker": Value("string"),
            "gender": Value("string"),
            "session": Value("int32"),
            "duration": Value("float64"),
        }
    )


def build_dataset(rows: list[dict], label_names: Iterable[str]) -> Dataset:
    """Rows with `audio`, `label_text`, `speaker` (+ optional `gender`, `session`, `duration`) → a corpus Dataset.

    `label` is the index of `label_text` in `label_names`, or -1 when it is not one of them.
    """
    label_names = list(label_names)
    index = {name: i for i, name in enumerate(label_names)}
    columns = {name: [] for name in corpus_features(label_names)}
    for row in rows:
        text = row["label_text"]
        columns["audio"].append(row["audio"])
        columns["label"].append(index.get(text, -1))
        columns["label_text"].append(text)
        columns["speaker"].append(row["speaker"])
        columns["gender"].append(row.get("gender", ""))
        columns["session"].append(row.get("session", -1))
        columns["duration"].append(row["duration"] if row.get("duration") is not None else _duration(row["audio"]))
    return Dataset.from_dict(columns, features=corpus_features(label_names))


def _duration(path: str) -> float | None:
    try:
        return audio_duration(path)
    except (AudioInputError, OSError):
        return None  # reported by the dataset checks, with every other problem


def normalize_gender(value: str | None) -> str:
    return GENDERS.get((value or "").strip().lower(), "")


def load_iemocap(root: str | Path) -> Dataset:
    """IEMOCAP (official `IEMOCAP_full_release` layout), 4 classes: neutral, happy (+ excited), sad, angry.

    Labels come from `Session{1..5}/dialog/EmoEvaluation/*.txt` (top-level files; the `Categorical/`,
    `Attribute/`, `Self-evaluation/` sub-folders and the per-annotator `C-E1:` lines are ignored); audio is
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
    rows = {}
    for path in label_files:
        for line in path.read_text(errors="replace").splitlines():
            match = _IEMOCAP_LINE.match(line)
            if match is None or match.group(3) not in IEMOCAP_LABEL_MAP:
                continue
            utterance, gender_letter, emotion = match.groups()
            session = int(utterance[3:5])
            dialog = utterance.rsplit("_", 1)[0]
            rows[utterance] = {
                "audio": str(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav"),
                "label_text": IEMOCAP_LABEL_MAP[emotion],
                "speaker": utterance[:5] + gender_letter,
                "gender": normalize_gender(gender_letter),
                "session": session,
            }
    return build_dataset([rows[key] for key in sorted(rows)], IEMOCAP_LABELS)


def _audio_files(root: Path, extensions=(".wav",)) -> list[Path]:
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: corpus folder does not exist.")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and not p.name.startswith("."))


def _warn_unmatched(corpus: str, unmatched: list[Path], convention: str):
    if unmatched:
        names = ", ".join(p.name for p in unmatched[:5])
        logger.warning(f"{corpus}: ignored {len(unmatched)} files not named {convention} (e.g. {names}).")


def load_crema_d(root: str | Path, demographics: str | Path | None = None) -> Dataset:
    """CREMA-D: `{actor}_{sentence}_{emotion}_{level}.wav` (e.g. `1001_DFA_ANG_XX.wav`), 6 classes, 91 actors.

    Gender comes from `VideoDemographics.csv` (`ActorID`, `Sex`) when it is found in `root`, its parent, or at
    `demographics`; otherwise it is left empty.
    """
    root = Path(root).expanduser().resolve()
    genders = _crema_d_genders(root, demographics)
    rows, unmatched = [], []
    for path in _audio_files(root):
        match = _CREMA_D_NAME.match(path.stem)
        if match is None:
            unmatched.append(path)
            continue
        actor, _, emotion, _ = match.groups()
        rows.append(
            {
                "audio": str(path),
                "label_text": CREMA_D_LABEL_MAP.get(emotion, emotion),
                "speaker": actor,
                "gender": genders.get(actor, ""),
            }
        )
    _warn_unmatched("CREMA-D", unmatched, "ACTOR_SENTENCE_EMOTION_LEVEL.wav")
    if not rows:
        raise FileNotFoundError(f"{root}: no CREMA-D files (expected names like 1001_DFA_ANG_XX.wav).")
    return build_dataset(rows, CREMA_D_LABELS)


def _crema_d_genders(root: Path, demographics: str | Path | None) -> dict[str, str]:
    candidates = [Path(demographics)] if demographics else [root / "VideoDemographics.csv", root.parent / "VideoDemographics.csv"]
    for path in candidates:
        if path.is_file():
            with open(path, newline="") as f:
                return {row["ActorID"].strip(): normalize_gender(row.get("Sex")) for row in csv.DictReader(f)}
    return {}


def load_ravdess(root: str | Path, include_song: bool = False) -> Dataset:
    """RAVDESS audio-only files `MM-VV-EE-II-SS-RR-AA.wav` (modality 03 = audio-only, vocal channel 01 = speech,
    02 = song; emotion EE 01..08; actor AA 01..24, odd = male, even = female). 8 classes, 1440 speech files.
    """
    root = Path(root).expanduser().resolve()
    rows, unmatched = [], []
    for path in _audio_files(root):
        match = _RAVDESS_NAME.match(path.stem)
        if match is None or match.group(1) != "03":
            unmatched.append(path)
            continue
        _, channel, emotion, _, _, _, actor = match.groups()
        if channel == "02" and not include_song:
            continue
        rows.append(
            {
                "audio": str(path),
                "label_text": RAVDESS_LABEL_MAP.get(emotion, emotion),
                "speaker": actor,
                "gender": "male" if int(actor) % 2 else "female",
            }
        )
    _warn_unmatched("RAVDESS", unmatched, "03-VV-EE-II-SS-RR-AA.wav (audio-only)")
    if not rows:
        raise FileNotFoundError(f"{root}: no RAVDESS audio-only files (expected names like 03-01-05-01-02-01-12.wav).")
    return build_dataset(rows, RAVDESS_LABELS)


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
    if metadata_path.is_file():
        rows = _rows_from_metadata(root, metadata_path)
    else:
        rows = _rows_from_label_folders(root, speaker_regex)
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


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _rows_from_label_folders(root: Path, speaker_regex: str | None) -> list[dict]:
    pattern = re.compile(speaker_regex) if speaker_regex else None
    rows = []
    for path in _audio_files(root, AUDIO_EXTENSIONS):
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


def load_hub_dataset(
    dataset_id: str,
    split: str = "train",
    audio_column: str = "audio",
    label_column: str = "label",
    speaker_column: str = "speaker",
    gender_column: str | None = None,
    labels: Iterable[str] | None = None,
    **load_kwargs,
) -> Dataset:
    """A Hub dataset (or anything `datasets.load_dataset` reads) with an audio, a label and a speaker column.

    Audio is kept undecoded (`Audio(decode=False)`: `{"path", "bytes"}`) and decoded by `load_audio`.
    `labels` defaults to the `ClassLabel` names of `label_column`, or the sorted label strings.
    """
    from datasets import Audio, load_dataset

    source = load_dataset(dataset_id, split=split, **load_kwargs)
    missing = {audio_column, label_column, speaker_column, gender_column} - set(source.column_names) - {None}
    if missing:
        raise CorpusError(f"{dataset_id}: missing column(s) {sorted(missing)}; it has {source.column_names}.")
    source = source.cast_column(audio_column, Audio(decode=False))
    label_feature = source.features[label_column]
    names = label_feature.names if isinstance(label_feature, ClassLabel) else None
    if names:
        texts = [names[i] if i is not None and i >= 0 else "" for i in source[label_column]]
    else:
        texts = ["" if value is None else str(value).strip() for value in source[label_column]]
    if labels is None:
        labels = names or sorted({text for text in texts if text})
    labels = list(labels)
    index = {name: i for i, name in enumerate(labels)}
    audio = source[audio_column]
    columns = {
        "audio": audio,
        "label": [index.get(text, -1) for text in texts],
        "label_text": texts,
        "speaker": [str(s) for s in source[speaker_column]],
        "gender": [normalize_gender(g) for g in source[gender_column]] if gender_column else [""] * len(texts),
        "session": [-1] * len(texts),
        "duration": [_bytes_duration(a) for a in audio],
    }
    # Build with a plain struct and cast: encoding into an `Audio` feature would need torchcodec.
    features = corpus_features(labels)
    features["audio"] = {"path": Value("string"), "bytes": Value("binary")}
    return Dataset.from_dict(columns, features=features).cast_column("audio", Audio(decode=False))


def _bytes_duration(audio: dict) -> float | None:
    try:
        info = sf.info(io.BytesIO(audio["bytes"])) if audio.get("bytes") else sf.info(audio["path"])
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    return info.frames / info.samplerate


LOADERS = {
    "iemocap": load_iemocap,
    "crema_d": load_crema_d,
    "ravdess": load_ravdess,
    "audio_folder": load_audio_folder,
    "hub": load_hub_dataset,
}


def load_corpus(loader: str, root: str | Path, **kwargs) -> Dataset:
    """Dispatch on the loader name of a config (`data.loader`): iemocap, crema_d, ravdess, audio_folder, hub."""
    if loader not in LOADERS:
        raise CorpusError(f"data.loader must be one of {sorted(LOADERS)}, got {loader!r}.")
    accepted = list(inspect.signature(LOADERS[loader]).parameters)[1:]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and loader != "hub":  # the Hub loader passes extra arguments on to `datasets.load_dataset`
        raise CorpusError(f"data.loader_args: unknown argument(s) {unknown} for loader {loader!r}; expected {accepted}.")
    return LOADERS[loader](root, **kwargs)


def select_speakers(
    dataset: Dataset, speakers: Iterable[str] | None = None, max_per_speaker: int | None = None
) -> Dataset:
    """Keep `speakers` only (in any order) and at most `max_per_speaker` rows of each, classes interleaved
    (row i of class a, row i of class b, ...) so that a small subset stays balanced. Deterministic.
    """
    speaker_column = dataset["speaker"]
    if speakers is not None:
        speakers = set(speakers)
        unknown = speakers - set(speaker_column)
        if unknown:
            raise CorpusError(f"data.speakers: {sorted(unknown)} not in the corpus (it has {sorted(set(speaker_column))}).")
    by_speaker_label: dict[str, dict[int, list[int]]] = {}
    for i, (speaker, label) in enumerate(zip(speaker_column, dataset["label"])):
        if speakers is None or speaker in speakers:
            by_speaker_label.setdefault(speaker, {}).setdefault(label, []).append(i)
    keep = []
    for speaker in sorted(by_speaker_label):
        groups = [by_speaker_label[speaker][label] for label in sorted(by_speaker_label[speaker])]
        interleaved = [group[rank] for rank in range(max(map(len, groups))) for group in groups if rank < len(group)]
        keep += interleaved[:max_per_speaker] if max_per_speaker else interleaved
    return dataset.select(sorted(keep))


__all__ = [
    "CREMA_D_LABELS",
    "CorpusError",
    "IEMOCAP_LABELS",
    "LOADERS",
    "RAVDESS_LABELS",
    "build_dataset",
    "load_audio_folder",
    "load_corpus",
    "load_crema_d",
    "load_hub_dataset",
    "load_iemocap",
    "load_ravdess",
    "select_speakers",
]
