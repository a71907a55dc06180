"""`loader: hub`: a Hub dataset (or anything `datasets.load_dataset` reads) → a corpus Dataset.

Generic: a Hub dataset whose name is one the project knows (`user/polish3`) gets that corpus's facts from
`modeling.data.catalog.corpus_info`.
"""

import hashlib
import io
from collections.abc import Iterable

import soundfile as sf
from datasets import ClassLabel, Dataset, Value

from .corpus import CorpusError, corpus_features, drop_duplicates, label_ids, normalize_gender


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
    `labels` defaults to the `ClassLabel` names of `label_column` (its label order), or the sorted label strings.
    """
    from datasets import Audio, load_dataset

    source = load_dataset(dataset_id, split=split, **load_kwargs)
    missing = {audio_column, label_column, speaker_column, gender_column} - set(source.column_names) - {None}
    if missing:
        raise CorpusError(f"{dataset_id}: missing column(s) {sorted(missing)}; it has {source.column_names}.")
    source = source.cast_column(audio_column, Audio(decode=False))
    source = _without_duplicates(dataset_id, source, audio_column)
    label_feature = source.features[label_column]
    names = label_feature.names if isinstance(label_feature, ClassLabel) else None
    if names:
        texts = [names[i] if i is not None and i >= 0 else "" for i in source[label_column]]
    else:
        texts = ["" if value is None else str(value).strip() for value in source[label_column]]
    if labels is None:
        labels = names or sorted({text for text in texts if text})
    labels = list(labels)
    audio = source[audio_column]
    columns = {
        "audio": audio,
        "label": label_ids(texts, labels),
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


def _without_duplicates(dataset_id: str, source: Dataset, audio_column: str) -> Dataset:
    """Rows whose audio has the same file name and the same bytes are one recording (a split uploaded twice, a
    repeated row): keep the first, warn with the count. Same-named files with other bytes stay."""
    audios = source[audio_column]
    rows = [{"audio": audio.get("path") or "", "row": i} for i, audio in enumerate(audios)]

    def recording_id(row: dict):
        audio = audios[row["row"]]
        content = audio.get("bytes") or (audio.get("path") or "").encode()
        return row["audio"].rsplit("/", 1)[-1], hashlib.sha1(content).hexdigest()

    kept = drop_duplicates(dataset_id, rows, recording_id)
    return source if len(kept) == len(rows) else source.select([row["row"] for row in kept])


def _bytes_duration(audio: dict) -> float | None:
    try:
        info = sf.info(io.BytesIO(audio["bytes"])) if audio.get("bytes") else sf.info(audio["path"])
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    return info.frames / info.samplerate


__all__ = ["load_hub_dataset"]
