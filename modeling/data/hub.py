"""`loader: hub`: a Hub dataset id or a local dataset folder → a corpus Dataset, with the audio kept in Arrow.

`data.root` may be a Hub dataset id (`user/name`), or a local folder holding parquet or arrow files (as
`push_to_hub`, `to_parquet` or `save_to_disk` write them) or audio files with a `metadata.csv` (an audiofolder).
No torchcodec is needed: audio columns are read as `Audio(decode=False)` (`{"path", "bytes"}`) and decoded by
`modeling.audio.load_audio`; audiofolders (local, or a Hub repo of audio files that `datasets` could only build with
torchcodec) are read by `modeling.data.audio_folder`. The audio column is never copied into Python: the corpus
Dataset keeps the source's Arrow column (memory-mapped from the datasets cache), durations come from the audio
headers read a batch at a time, and only the small columns (labels, speakers) pass through Python.

Generic: a Hub dataset whose name is one the project knows (`user/polish3`) gets that corpus's facts from
`modeling.data.catalog.corpus_info`.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from datasets import (
    Audio,
    ClassLabel,
    Dataset,
    DatasetDict,
    Sequence,
    Value,
    concatenate_datasets,
    load_dataset,
    load_from_disk,
)

from ..audio import AUDIO_EXTENSIONS
from .audio_columns import DURATION_COLUMN, audio_lengths, duration_column
from .audio_folder import load_audio_folder
from .corpus import CorpusError, corpus_features, drop_duplicates, label_ids, normalize_gender
from .folds import canonical_split
from .votes import distribution_from_cell


logger = logging.getLogger(__name__)


def load_hub_dataset(
    dataset_id: str,
    split: str | None = "train",
    audio_column: str = "audio",
    label_column: str = "label",
    speaker_column: str | None = None,
    gender_column: str | None = None,
    labels: Iterable[str] | None = None,
    label_distribution: bool = False,
    distribution_column: str = "label_distribution",
    **load_kwargs,
) -> Dataset:
    """A Hub dataset or a local dataset folder with an audio and a label column (+ optional speaker, gender).

    Args:
        dataset_id: Hub id, or a local folder (parquet / arrow / `save_to_disk` / audio files + metadata.csv).
        split: the split to read; `None` (YAML `null`) reads every split and records it in a `split` column
            (train / validation / test, for `data.folds: predefined`).
        audio_column, label_column: the source's columns (the label: a `ClassLabel` or strings).
        speaker_column: default `speaker` when the source has it, else no speakers (predefined folds need none);
            a column named explicitly must exist.
        gender_column: optional.
        labels: the classes in order; default: the `ClassLabel` names of `label_column`, or the sorted strings.
        label_distribution: read soft labels from `distribution_column` into a `label_distribution` column: per row
            a list of C probabilities in label order, a mapping {class: probability}, or either as JSON text
            (`modeling.data.votes.distribution_from_cell`).
        load_kwargs: passed on to `datasets.load_dataset` (e.g. `revision`, `cache_dir`, `data_files`).
    Raises:
        CorpusError: a missing column (the source's columns are listed).
    """
    columns = dict(
        audio_column=audio_column,
        label_column=label_column,
        speaker_column=speaker_column,
        gender_column=gender_column,
        labels=labels,
        distribution_column=distribution_column if label_distribution else None,
    )
    folder = Path(str(dataset_id)).expanduser()
    if str(dataset_id) == "audiofolder" and "data_dir" in load_kwargs:  # datasets' own idiom for a local folder
        folder = Path(str(load_kwargs["data_dir"])).expanduser()
        if folder.is_dir() and _is_audio_folder(folder):
            load_kwargs = {key: value for key, value in load_kwargs.items() if key != "data_dir"}
            return local_audio_folder(folder, split, load_kwargs, **columns)
    if folder.is_dir() and _is_audio_folder(folder):
        return local_audio_folder(folder, split, load_kwargs, **columns)
    try:
        source = _load(dataset_id, split, audio_column, **load_kwargs)
    except Exception as error:  # an audiofolder repo on the Hub: datasets needs torchcodec to build it
        if not _needs_torchcodec(error) or folder.is_dir():
            raise
        revision = load_kwargs.get("revision")
        rest = {key: value for key, value in load_kwargs.items() if key != "revision"}
        return local_audio_folder(_download(dataset_id, revision), split, rest, **columns)
    if speaker_column is None and "speaker" in source.column_names:
        speaker_column = "speaker"
    distribution = columns["distribution_column"]
    missing = {audio_column, label_column, speaker_column, gender_column, distribution} - set(source.column_names)
    missing -= {None}
    if missing:
        raise CorpusError(f"{dataset_id}: missing column(s) {sorted(missing)}; it has {source.column_names}.")
    return _corpus_dataset(
        dataset_id, source, audio_column, label_column, speaker_column, gender_column, labels, distribution
    )


def _with_distribution(dataset_id, dataset: Dataset, values: list, column: str) -> Dataset:
    """`dataset` with a `label_distribution` column parsed from the source's `column` (see `distribution_from_cell`).

    Raises:
        CorpusError: values that cannot be read, every such row listed.
    """
    names = dataset.features["label"].names
    parsed, problems = [], []
    for row, value in enumerate(values):
        distribution, problem = distribution_from_cell(value, names)
        parsed.append(distribution)
        if problem:
            problems.append(f"{dataset_id}: row {row}: {column}: {problem}.")
    if problems:
        raise CorpusError(f"{len(problems)} problem(s) in {dataset_id}:\n" + "\n".join(f"  - {p}" for p in problems))
    return dataset.add_column("label_distribution", parsed, feature=Sequence(Value("float64")))


def local_audio_folder(
    folder: Path,
    split: str | None,
    load_kwargs: dict,
    *,
    audio_column,
    label_column,
    speaker_column,
    gender_column,
    labels,
    distribution_column=None,
) -> Dataset:
    """An audiofolder read from its files and metadata.csv (no torchcodec), with the Hub loader's options honoured
    as `datasets` would: the label / speaker / gender columns, and `split` (`train` for a folder without splits;
    `None`: every split, in a `split` column). Options that cannot apply are refused, never dropped.

    Raises:
        CorpusError: a named column the metadata lacks, a split the folder lacks, `audio_column` other than
            `audio` (an audiofolder lists its files in `file_name`), `load_dataset` arguments (nothing is built).
    """
    if load_kwargs:
        raise CorpusError(
            f"{folder}: data.loader_args {sorted(load_kwargs)} do not apply to a local audio folder (it is read from "
            "its files and metadata.csv, not built by datasets.load_dataset)."
        )
    if audio_column != "audio":
        raise CorpusError(
            f"{folder}: audio_column {audio_column!r} does not apply to an audio folder: its metadata.csv lists the "
            "audio files in `file_name` (or `file`)."
        )
    dataset = load_audio_folder(
        folder,
        labels=labels,
        label_column=label_column,
        speaker_column=speaker_column,
        gender_column=gender_column,
        label_distribution=distribution_column is not None,
        distribution_column=distribution_column or "label_distribution",
    )
    if split is None:
        return dataset
    present = sorted(set(dataset["split"])) if "split" in dataset.column_names else ["train"]
    if split not in present:
        raise CorpusError(f"{folder}: no split {split!r}; it has {present} (split: null reads every split).")
    if "split" not in dataset.column_names:
        return dataset
    rows = [i for i, name in enumerate(dataset["split"]) if name == split]
    return dataset.select(rows).remove_columns("split")


def _needs_torchcodec(error: BaseException) -> bool:
    """Whether `datasets` failed for want of torchcodec (the cause may sit below a DatasetGenerationError)."""
    while error is not None:
        if "torchcodec" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def _corpus_dataset(
    dataset_id, source: Dataset, audio_column, label_column, speaker_column, gender_column, labels, distribution=None
):
    """The corpus columns around the source's own (Arrow) audio column; only the small columns are rebuilt (and
    `label_distribution` from the `distribution` column, when given)."""
    if isinstance(source.features[audio_column], Audio):
        source = source.cast_column(audio_column, Audio(decode=False))  # a change of feature, not of the data
    source = _without_duplicates(dataset_id, source, audio_column, label_column)
    label_feature = source.features[label_column]
    names = label_feature.names if isinstance(label_feature, ClassLabel) else None
    raw_labels = list(source[label_column])
    if names:
        texts = [names[i] if i is not None and i >= 0 else "" for i in raw_labels]
    else:
        texts = ["" if value is None else str(value).strip() for value in raw_labels]
    labels = list(labels if labels is not None else names or sorted({text for text in texts if text}))
    count = len(texts)
    features = corpus_features(labels)
    columns = {
        "label": label_ids(texts, labels),
        "label_text": texts,
        "speaker": [str(s or "") for s in source[speaker_column]] if speaker_column else [""] * count,
        "gender": [normalize_gender(g) for g in source[gender_column]] if gender_column else [""] * count,
        "session": [-1] * count,
    }
    # a `duration_s` column, else a legacy `duration` one (lhotse, SpeechBrain: seconds), else the audio headers
    columns[DURATION_COLUMN] = audio_lengths(source, audio_column, strict=False)
    if "split" in source.column_names:
        columns["split"] = [str(split or "") for split in source["split"]]
        features["split"] = Value("string")
    # The source's Arrow table minus the other columns: the audio column stays memory-mapped, never copied.
    dataset = source.remove_columns([name for name in source.column_names if name != audio_column])
    if audio_column != "audio":
        dataset = dataset.rename_column(audio_column, "audio")
    for name, values in columns.items():
        dataset = dataset.add_column(name, values, feature=features[name])
    if distribution is None:
        return dataset
    return _with_distribution(dataset_id, dataset, source[distribution], distribution)


def _without_duplicates(dataset_id: str, source: Dataset, audio_column: str, label_column: str) -> Dataset:
    """Rows whose audio has the same file name and the same bytes are one recording (a split uploaded twice, a
    repeated row): keep the first, warn with the count; copies with different labels are an error
    (`drop_duplicates`). Same-named files with other bytes stay. Only the file names are read for every row (the
    bytes stay in Arrow: memory does not grow with the corpus); the bytes of rows whose names repeat are hashed."""
    if source._indices is not None:  # a selection of rows: give it its own table first
        source = source.flatten_indices()
    column = source.data.column(audio_column)  # Arrow: struct<bytes, path> or a string path
    paths = pc.struct_field(column, "path") if pa.types.is_struct(column.type) else column
    names = [str(path or "").rsplit("/", 1)[-1] for path in paths.to_pylist()]
    counts = Counter(names)
    repeated = [i for i, name in enumerate(names) if counts[name] > 1]
    if not repeated:
        return source
    feature = source.features[label_column]
    class_names = feature.names if isinstance(feature, ClassLabel) else None
    digests, label_texts = {}, {}
    repeated_rows = source.select(repeated)
    for i, audio, label in zip(repeated, repeated_rows[audio_column], repeated_rows[label_column]):
        audio = audio if isinstance(audio, dict) else {"path": str(audio), "bytes": None}
        digests[i] = hashlib.sha1(audio.get("bytes") or (audio.get("path") or "").encode()).hexdigest()
        label_texts[i] = class_names[label] if class_names and isinstance(label, int) and label >= 0 else label
    rows = [
        {
            "audio": name,
            "row": i,
            "where": f"row {i + 1}",
            "label_text": label_texts.get(i),
            "id": (name, digests.get(i)),
        }
        for i, name in enumerate(names)
    ]
    kept = drop_duplicates(dataset_id, rows, lambda row: row["id"])
    return source if len(kept) == len(rows) else source.select([row["row"] for row in kept])


def _load(dataset_id: str, split: str | None, audio_column: str = "audio", **load_kwargs) -> Dataset:
    """`load_from_disk` for a `save_to_disk` folder, else `load_dataset`; all splits (with `split`) when None."""
    folder = Path(str(dataset_id)).expanduser()
    if folder.is_dir() and ((folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()):
        loaded = load_from_disk(str(folder))
    elif folder.is_dir() and any(folder.rglob("*.parquet")) and not set(load_kwargs) - {"cache_dir"}:
        loaded = parquet_folder(folder, load_kwargs.get("cache_dir"), audio_column)
    else:
        loaded = load_dataset(str(dataset_id), split=split, **load_kwargs)
    if isinstance(loaded, Dataset):
        return loaded
    if split is not None:
        if split not in loaded:
            raise CorpusError(f"{dataset_id}: no split {split!r}; it has {sorted(loaded)}.")
        return loaded[split]
    parts = [part.add_column("split", [name] * len(part), feature=Value("string")) for name, part in loaded.items()]
    return concatenate_datasets(parts)


def parquet_folder(folder: Path, cache_dir: str | None = None, audio_column: str = "audio") -> DatasetDict:
    """A local folder of parquet files (`<split>-*.parquet`, or under `<split>/` folders; else `train`) → one
    memory-mapped Arrow file per split, written 64 rows at a time.

    `load_dataset("parquet")` would do the same, but its peak memory grows with the corpus (+135 MB per 100 MB of
    audio measured on datasets 5.2, +50 MB with `pre_buffer=False`); this stays flat. Converted files are cached under
    `cache_dir` (default: the datasets cache) by the parquet files' paths, sizes and modification times.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_split: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*.parquet")):
        parts = [path.stem.split("-")[0].split("_")[0], *[p.name for p in path.relative_to(folder).parents]]
        split = next((canonical_split(part) for part in parts if canonical_split(part)), "train")
        by_split.setdefault(split, []).append(path)
    key = hashlib.sha256(
        json.dumps(
            [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.rglob("*.parquet"))]
        ).encode()
    ).hexdigest()[:16]
    key += f"-{audio_column}"
    cache = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "frame_aligned_parquet" / key
    cache.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, paths in by_split.items():
        target = cache / f"{split}.arrow"
        if not target.is_file():
            tmp = target.with_suffix(".tmp")
            schema = pq.ParquetFile(paths[0]).schema_arrow
            measure = duration_column(schema.names) is None and audio_column in schema.names
            if measure:  # measured now, from the batch in hand: later it would page the mapped file in
                schema = schema.append(pa.field(DURATION_COLUMN, pa.float64()))
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
                for path in paths:
                    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=64):
                        if measure:
                            durations = _batch_durations(batch.column(audio_column))
                            batch = pa.RecordBatch.from_arrays([*batch.columns, durations], schema=schema)
                        writer.write_batch(batch)
            tmp.replace(target)
        splits[split] = Dataset.from_file(str(target))
    return DatasetDict(splits)


def _batch_durations(column):
    """Durations (s) of one batch's audio column (None where unreadable: the dataset checks report those rows)."""
    import pyarrow as pa

    from ..audio import AudioInputError, input_duration
    from .audio_columns import arrow_values

    durations = []
    for value in arrow_values(pa.chunked_array([column])):
        try:
            durations.append(input_duration(value))
        except AudioInputError:
            durations.append(None)
    return pa.array(durations, pa.float64())


def _is_audio_folder(folder: Path) -> bool:
    """Audio files (and no parquet/arrow data) below `folder`: an audiofolder that `datasets` needs torchcodec for."""
    suffixes = {path.suffix.lower() for path in folder.rglob("*") if path.is_file()}
    return bool(suffixes & set(AUDIO_EXTENSIONS)) and not suffixes & {".parquet", ".arrow"}


def _download(dataset_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    logger.info(f"{dataset_id}: an audiofolder; reading its files and metadata.csv directly (no torchcodec).")
    return Path(snapshot_download(dataset_id, repo_type="dataset", revision=revision))


__all__ = ["load_hub_dataset"]
