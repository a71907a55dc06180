"""EmoBox (Ma et al., Interspeech 2024; https://github.com/emo-box/EmoBox): any of its corpora with its official
folds, read from EmoBox's metadata files (not its Python code, which does not run at its HEAD), the audio from the
user's own copy of the corpus.

EmoBox's layout, per corpus (`<EmoBox>/data/<corpus>/`, the `metadata_dir` below):

    label_map.json                              {"<emo code>": "<class name>", ...}
    data.seg.wrd.stm                            one line per utterance: `<key> <channel> <speaker> <start> <end>
                                                <id=<key>,lang=..,spk=<speaker>,emotion=<code>> <code>`
    fold_<k>/<corpus>_{train,valid,test}_fold_<k>.jsonl
                                                one JSON object per utterance: "key", "wav" (path relative to
                                                EmoBox's data folder: `downloads/<corpus>/...`), "emo" (the code),
                                                "length" (s), "channel", optional "start_time"/"end_time"; `valid`
                                                exists for some corpora only

Rows: `audio` = `root` / the `wav` path without its `downloads/<corpus>/` prefix (`root` is the user's copy of the
corpus, the folder EmoBox calls `downloads/<corpus>`), `label_text` = the class name of label_map.json, `speaker`
from data.seg.wrd.stm, one `split_fold<k>` column per fold (train / validation / test / "" when the utterance is
not in that fold), read by `data.folds: predefined` as one fold each.

Folds without an official validation split (e.g. IEMOCAP's, whose train folds hold 8 speakers): one training
speaker becomes validation, chosen deterministically (sorted training speakers, the (k−1)-th modulo their number).
Folds whose train (or validation) and test splits share speakers (e.g. EmoBox's CREMA-D and EmoDB folds) are
speaker-dependent: `speaker_dependent_folds` names them, the loader logs them, and every results/scores file and
model card of such a run labels its numbers speaker-dependent.
"""

import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from datasets import Dataset

from .corpus import CorpusError, build_dataset


logger = logging.getLogger(__name__)

EMOBOX_SPLITS = {"train": "train", "valid": "validation", "test": "test"}
_FOLD_DIR = re.compile(r"^fold_(\d+)$")


class EmoBoxError(CorpusError):
    """EmoBox metadata that cannot be used as asked (the message names the file, and the key or line)."""


@dataclass
class EmoBoxCorpus:
    """One corpus's EmoBox metadata: {key: record} of every utterance a fold names, the label map, {key: speaker},
    and {fold k: {"train"/"validation"/"test": [keys]}} (validation absent where EmoBox has none)."""

    name: str
    label_map: dict[str, str]
    records: dict[str, dict] = field(default_factory=dict)
    speakers: dict[str, str] = field(default_factory=dict)
    folds: dict[int, dict[str, list[str]]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key → the fold file that first named it

    @property
    def classes(self) -> list[str]:
        """The class names in label_map.json's order (duplicates kept once)."""
        return list(dict.fromkeys(self.label_map.values()))


def corpus_folder(metadata_dir: str | os.PathLike, corpus: str) -> Path:
    """`metadata_dir` itself when it holds label_map.json, else `metadata_dir/<corpus>` (EmoBox's data folder)."""
    folder = Path(metadata_dir).expanduser()
    return folder if (folder / "label_map.json").is_file() else folder / corpus


def _read_jsonl(path: Path, problems: list[str]) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                problems.append(f"{path}:{number}: not JSON ({error.msg}).")
    return records


def read_speakers(path: Path) -> dict[str, str]:
    """{key: speaker} of data.seg.wrd.stm (the `spk=` tag, else the third field)."""
    speakers = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        tag = re.search(r"[<,]spk=([^,>]*)", line)
        speakers[fields[0]] = tag.group(1) if tag else fields[2]
    return speakers


def read_emobox(metadata_dir: str | os.PathLike, corpus: str) -> EmoBoxCorpus:
    """Read one corpus's EmoBox metadata (module docstring).

    Raises:
        EmoBoxError: every problem at once: no label_map.json, no fold folders, a fold without its train or test
            file, a line that is not JSON, a record without key/wav/emo, an emo code label_map.json lacks (file and
            line named).
    """
    folder = corpus_folder(metadata_dir, corpus)
    label_path = folder / "label_map.json"
    if not label_path.is_file():
        raise EmoBoxError(f"{label_path}: not found (is {metadata_dir} EmoBox's data folder, or the {corpus} one?).")
    label_map = {str(k): str(v) for k, v in json.loads(label_path.read_text(encoding="utf-8")).items()}
    stm = folder / "data.seg.wrd.stm"
    result = EmoBoxCorpus(corpus, label_map, speakers=read_speakers(stm) if stm.is_file() else {})
    problems = []
    fold_dirs = sorted((int(m.group(1)), p) for p in folder.iterdir() for m in [_FOLD_DIR.match(p.name)] if m)
    if not fold_dirs:
        problems.append(f"{folder}: no fold_<k> folders.")
    for k, fold_dir in fold_dirs:
        result.folds[k] = {}
        for emobox_split, split in EMOBOX_SPLITS.items():
            path = fold_dir / f"{corpus}_{emobox_split}_fold_{k}.jsonl"
            if not path.is_file():
                if split != "validation":
                    problems.append(f"{path}: not found (every EmoBox fold has a train and a test file).")
                continue
            keys = []
            for number, record in enumerate(_read_jsonl(path, problems), 1):
                missing = [name for name in ("key", "wav", "emo") if name not in record]
                if missing:
                    problems.append(f"{path}:{number}: no {', '.join(missing)}.")
                    continue
                if str(record["emo"]) not in label_map:
                    problems.append(f"{path}:{number}: emo {record['emo']!r} is not in {label_path.name}.")
                    continue
                result.records.setdefault(record["key"], record)
                result.sources.setdefault(record["key"], str(path))
                keys.append(record["key"])
            result.folds[k][split] = keys
    if problems:
        raise EmoBoxError(f"EmoBox {corpus} ({folder}):\n" + "\n".join(f"- {p}" for p in problems))
    return result


def audio_path(root: Path, corpus: str, wav: str) -> Path:
    """The user's copy of a recording: `root` / `wav` without EmoBox's `downloads/<corpus>/` prefix. Where that file
    does not exist, the path's Unicode NFC/NFD forms and its cp437 reading are tried: some of EmoBox's paths are
    mis-decoded archive names (CaFE's `D‚go–t` is `Dégoût` read as cp1252 from a cp437 zip); the first that exists
    is returned, else the path as written."""
    relative = wav.replace("\\", "/")
    for prefix in (f"downloads/{corpus}/", "downloads/"):
        if relative.startswith(prefix):
            relative = relative[len(prefix) :]
            break
    candidates = [relative, unicodedata.normalize("NFC", relative), unicodedata.normalize("NFD", relative)]
    try:
        candidates.append(relative.encode("cp1252").decode("cp437"))
    except UnicodeError:
        pass
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    return root / relative


def speaker_dependent_folds(corpus: EmoBoxCorpus) -> dict[int, list[str]]:
    """{fold: speakers its test split shares with its train or validation split} for every speaker-dependent fold."""
    shared = {}
    for k, splits in corpus.folds.items():
        test = {corpus.speakers.get(key, "") for key in splits.get("test", [])} - {""}
        seen = {corpus.speakers.get(key, "") for s in ("train", "validation") for key in splits.get(s, [])}
        if test & seen:
            shared[k] = sorted(test & seen)
    return shared


def _validation_speaker(corpus: EmoBoxCorpus, k: int) -> str | None:
    speakers = sorted({corpus.speakers.get(key, "") for key in corpus.folds[k]["train"]} - {""})
    return speakers[(k - 1) % len(speakers)] if len(speakers) > 1 else None


def load_emobox(
    root: str | os.PathLike, corpus: str, metadata_dir: str | os.PathLike, labels: list[str] | None = None
) -> Dataset:
    """One EmoBox corpus as a corpus Dataset with its official folds (module docstring).

    Args:
        root: the user's copy of the corpus (what EmoBox calls `downloads/<corpus>`).
        corpus: EmoBox's name of the corpus (`cafe`, `iemocap`, `cremad`, ...).
        metadata_dir: EmoBox's `data` folder (or its `<corpus>` sub-folder).
        labels: the class order (label ids) to use; default: label_map.json's. It must name exactly the corpus's
            classes.
    Raises:
        EmoBoxError: metadata problems (`read_emobox`), segments (start_time/end_time: not supported), and every
            recording a fold file names that is missing under `root` (the fold file, the key and the path named).
    """
    root = Path(root).expanduser()
    meta = read_emobox(metadata_dir, corpus)
    if labels is not None and sorted(labels) != sorted(meta.classes):
        raise EmoBoxError(
            f"EmoBox {corpus}: loader_args.labels {list(labels)} must name exactly the classes of its label_map.json "
            f"{meta.classes}."
        )
    missing, segments = [], []
    for key, record in meta.records.items():
        path = audio_path(root, corpus, str(record["wav"]))
        if "start_time" in record or "end_time" in record:
            segments.append(f"{meta.sources[key]}: {key} is a segment (start_time/end_time) of {path}")
        elif not path.is_file():
            missing.append(f"{meta.sources[key]}: {key} → {path} not found")
    if missing or segments:
        listed = (missing + segments)[:20]
        more = len(missing) + len(segments) - len(listed)
        raise EmoBoxError(
            f"EmoBox {corpus}: {len(missing)} recording(s) the fold files name are missing under {root}"
            + (f", {len(segments)} segment(s) (not supported)" if segments else "")
            + ":\n"
            + "\n".join(f"- {line}" for line in listed)
            + (f"\n- ... and {more} more" if more else "")
        )
    keys = sorted(meta.records)
    rows = [
        {
            "audio": str(audio_path(root, corpus, str(meta.records[key]["wav"]))),
            "label_text": meta.label_map[str(meta.records[key]["emo"])],
            "speaker": meta.speakers.get(key, ""),
            "duration_s": float(meta.records[key]["length"]) if meta.records[key].get("length") else None,
        }
        for key in keys
    ]
    dataset = build_dataset(rows, list(labels) if labels is not None else meta.classes)
    dataset = dataset.add_column("emobox_key", keys)
    for k in sorted(meta.folds):
        split_of = {key: split for split, names in meta.folds[k].items() for key in names}
        if "validation" not in meta.folds[k]:
            held_out = _validation_speaker(meta, k)
            split_of.update(
                {key: "validation" for key in meta.folds[k]["train"] if meta.speakers.get(key) == held_out}
            )
            logger.info(f"EmoBox {corpus} fold {k}: no official validation split; speaker {held_out} validates.")
        dataset = dataset.add_column(f"split_fold{k}", [split_of.get(key, "") for key in keys])
    shared = speaker_dependent_folds(meta)
    if shared:
        logger.warning(
            f"EmoBox {corpus}: folds {sorted(shared)} share speakers between train and test (speaker-dependent), "
            "e.g. " + "; ".join(f"fold {k}: {', '.join(s[:5])}" for k, s in list(shared.items())[:3])
        )
    return dataset


def emobox_predictions(predictions, keys_by_file: dict[str, str]) -> list[dict]:
    """Per utterance, what EmoBox's evaluation (EmoBox/EmoEval.py) reads: {"key", "prediction", "label"} (class
    names, as EmoBox's `replace_label` turns codes into label_map.json's names), from `Predictions`.

    Raises:
        EmoBoxError: a predicted file without an EmoBox key (not from this corpus's folds).
    """
    unknown = [f for f in predictions.files if f not in keys_by_file]
    if unknown:
        raise EmoBoxError(f"{len(unknown)} predicted file(s) are not in the EmoBox folds, e.g. {unknown[:3]}.")
    return [
        {
            "key": keys_by_file[file],
            "prediction": predictions.classes[int(predicted)],
            "label": predictions.classes[int(label)],
        }
        for file, predicted, label in zip(predictions.files, predictions.predicted, predictions.labels)
    ]


__all__ = [
    "EmoBoxCorpus",
    "EmoBoxError",
    "audio_path",
    "emobox_predictions",
    "load_emobox",
    "read_emobox",
    "speaker_dependent_folds",
]
