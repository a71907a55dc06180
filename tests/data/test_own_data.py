"""Your own data as users hold it: spreadsheet CSVs, split folders without speakers (`data.folds: predefined`),
local parquet corpora through `loader: hub` with the audio kept in Arrow."""

import json
import shutil
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import yaml
from fake_corpora import copy_clips, make_split_folders, polish3_rows
from helpers import POLISH3, REPO

from modeling.data.audio_folder import load_audio_folder
from modeling.data.corpus import CorpusError
from modeling.data.folds import make_folds, split_fold
from modeling.data.hub import load_hub_dataset


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_excel_csv_utf8_with_bom_crlf_and_european_delimiters(tmp_path, delimiter):
    rows = polish3_rows(4)
    copy_clips(rows, tmp_path / "clips")
    lines = [delimiter.join(["file", "label", "speaker", "duration_s"])]
    lines += [
        delimiter.join(
            [
                f"clips/{r['file'].rsplit('/', 1)[-1]}",
                r["label"],
                r["speaker"],
                r["duration_s"].replace(".", ",") if delimiter != "," else r["duration_s"],
            ]
        )
        for r in rows
    ]
    (tmp_path / "metadata.csv").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    dataset = load_audio_folder(tmp_path)
    assert list(dataset["label_text"]) == [r["label"] for r in rows]
    assert list(dataset["speaker"]) == [r["speaker"] for r in rows]
    assert list(dataset["duration_s"]) == pytest.approx([float(r["duration_s"]) for r in rows])  # "1,082" = 1.082
    assert dataset[0]["audio"] == str((tmp_path / "clips" / rows[0]["file"].rsplit("/", 1)[-1]).resolve())


def test_unreadable_csv_rows_are_named_with_file_and_row(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_bytes(
        "\ufefffile;label;speaker\r\na.wav;sad;s1\r\nb.wav;sad\r\n;happy;s2\r\nc.wav;sad;s1;x\r\n".encode()
    )
    with pytest.raises(CorpusError) as error:
        load_audio_folder(tmp_path)
    message = str(error.value)
    assert "2 problem(s) in" in message  # field counts first (the rows cannot be read at all)
    assert f"{path}: row 3: 2 field(s), the header has 3 (';'-separated)" in message
    assert f"{path}: row 5: 4 field(s), the header has 3" in message
    path.write_bytes(b"file,label\na.wav,sad\nb.wav,caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(CorpusError, match=r"metadata.csv: row 3: not UTF-8 text.*save it as \"CSV UTF-8\""):
        load_audio_folder(tmp_path)
    path.write_text("file;label\n;sad\n")
    with pytest.raises(CorpusError, match=r"metadata.csv: row 2: empty 'file'"):
        load_audio_folder(tmp_path)


def test_split_folders_give_one_predefined_fold(tmp_path):
    counts = make_split_folders(tmp_path)
    dataset = load_audio_folder(tmp_path)
    assert set(dataset["speaker"]) == {""}
    (fold,) = make_folds(dataset, "predefined")
    splits = split_fold(dataset, fold)
    assert {split: len(splits[split]) for split in splits} == counts
    assert all(path.startswith(str(tmp_path / "test")) for path in splits["test"]["audio"])


@pytest.mark.slow
def test_train_py_on_split_folders_without_speakers(tmp_path):
    counts = make_split_folders(tmp_path / "corpus")
    from runs import TINY_BACKBONE

    config = {
        "data": {"loader": "audio_folder", "root": str(tmp_path / "corpus"), "folds": "predefined"},
        "model": {"random_init": TINY_BACKBONE},
        "stage1": {"epochs": 1, "batch_size": 3, "max_length_seconds": 1.0},
        "stage2": {"epochs": 1, "batch_size": 3, "num_trainable_layers": 1, "max_length_seconds": 1.0},
    }
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "train.py", "--config", str(tmp_path / "own.yaml"), "--output-dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["folds_evaluated"] == [1]
    split = json.loads((tmp_path / "run" / "fold1" / "split.json").read_text())
    assert {name: split[name]["num_examples"] for name in counts} == counts


def write_parquet_corpus(folder, rows: int, clip_files, splits=("train",), row_group_size=100):
    """`rows` rows of embedded real FLAC bytes (clips repeated under names of their own: a recording found twice under
    one name would be loaded once), as `push_to_hub` lays a dataset out."""
    blobs = [(path.name, path.read_bytes()) for path in clip_files]
    (folder / "data").mkdir(parents=True, exist_ok=True)
    per_split = rows // len(splits)
    for split in splits:
        audio = [
            {"bytes": blobs[i % len(blobs)][1], "path": f"{split}-{i:06d}-{blobs[i % len(blobs)][0]}"}
            for i in range(per_split)
        ]
        table = pa.table(
            {
                "audio": pa.array(audio, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                "emotion": [("anger", "fear", "neutral")[i % 3] for i in range(per_split)],
            }
        )
        pq.write_table(
            table,
            folder / "data" / f"{split}-00000-of-00001.parquet",
            row_group_size=row_group_size,
            use_dictionary=False,
        )  # repeated clips must take their real size


def test_hub_loader_reads_every_split_of_a_local_parquet_dataset(tmp_path):
    clips = sorted((POLISH3 / "audio").glob("m1.*.flac"))[:3]
    write_parquet_corpus(tmp_path, 12, clips, splits=("train", "validation", "test"))
    dataset = load_hub_dataset(str(tmp_path), split=None, label_column="emotion", cache_dir=str(tmp_path / "cache"))
    assert dataset.column_names[:7] == ["audio", "label", "label_text", "speaker", "gender", "session", "duration_s"]
    assert sorted(set(dataset["split"])) == ["test", "train", "validation"]
    assert dataset.features["label"].names == ["anger", "fear", "neutral"]
    assert dataset[1]["audio"]["bytes"] == clips[1].read_bytes()
    assert dataset[1]["duration_s"] == pytest.approx(sf.info(clips[1]).duration)
    (fold,) = make_folds(dataset, "predefined")
    assert {name: len(part) for name, part in split_fold(dataset, fold).items()} == {
        "train": 4,
        "validation": 4,
        "test": 4,
    }


MEMORY_PROBE = textwrap.dedent("""
    import os, resource, sys
    from modeling.data.hub import load_hub_dataset
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dataset = load_hub_dataset(sys.argv[1], label_column="emotion", cache_dir=sys.argv[2])
    assert len(dataset) == int(sys.argv[3]) and dataset[len(dataset) - 1]["duration_s"] > 0
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")


# The check: 100 MB vs 400 MB of distinct recordings, growth < 100 MB (measured -5.9 MB in 20 s; at 1/4 scale
# the import-time noise was as large as the signal, +40 MB).
SCALE = 1.0
MAX_GROWTH_MB = 100


@pytest.mark.heavy  # two corpora loaded in fresh processes to compare peak memory (~45 CPU-s)
@pytest.mark.slow
def test_hub_loader_memory_does_not_grow_with_corpus_size(tmp_path):
    """Peak memory (ru_maxrss) of loading a 4x larger parquet corpus grows by < SCALE x 100 MB."""
    clips = sorted((POLISH3 / "audio").glob("*.flac"))[:60]
    mean_size = sum(p.stat().st_size for p in clips) / len(clips)
    peaks = {}
    for megabytes in (100 * SCALE, 400 * SCALE):
        rows = int(megabytes * 1e6 / mean_size)
        folder = tmp_path / f"corpus{megabytes:g}"
        write_parquet_corpus(folder, rows, clips)
        size = sum(p.stat().st_size for p in (folder / "data").iterdir())
        assert size == pytest.approx(megabytes * 1e6, rel=0.1)
        # Through sh, which forks python: a child exec'd straight from pytest would start with pytest's own peak
        # as its ru_maxrss (it is kept across execve).
        result = subprocess.run(
            [
                "/bin/sh",
                "-c",
                '"$0" "$@"; status=$?; exit $status',
                sys.executable,
                "-c",
                MEMORY_PROBE,
                str(folder),
                str(tmp_path / f"cache{megabytes:g}"),
                str(rows),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        before, after = map(int, result.stdout.split())
        peaks[megabytes] = after
        shutil.rmtree(folder)
    growth_mb = (peaks[400 * SCALE] - peaks[100 * SCALE]) / 1024
    print(f"peak memory: {peaks} KiB, growth {growth_mb:.1f} MB")
    assert growth_mb < MAX_GROWTH_MB, peaks


def own_folder(root, label_header="emotion", speaker_header="speaker"):
    """An audiofolder as 🤗 datasets documents it: clips + metadata.csv with `file_name` and named columns."""
    rows = polish3_rows(6)
    copy_clips(rows, root)
    lines = [f"file_name,{label_header},{speaker_header}"]
    lines += [f"{r['file'].rsplit('/', 1)[-1]},{r['label']},{r['speaker']}" for r in rows]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return rows


def test_hub_loader_honours_label_column_on_a_local_audio_folder(tmp_path):
    """Issue 19: `loader: hub` on a folder with `file_name,emotion` and `label_column: emotion` failed asking for
    `label` (the option was dropped for local audio folders); the speaker column is honoured the same way."""
    from modeling.data import load_corpus

    rows = own_folder(tmp_path / "own", speaker_header="client")
    dataset = load_corpus("hub", str(tmp_path / "own"), label_column="emotion", speaker_column="client")
    assert list(dataset["label_text"]) == [r["label"] for r in rows]
    assert list(dataset["speaker"]) == [r["speaker"] for r in rows]
    assert dataset.features["label"].names == sorted({r["label"] for r in rows})


@pytest.mark.bad_input
def test_a_misspelled_label_column_is_refused_on_a_local_audio_folder(tmp_path):
    """...and a misspelled `label_column` on a folder that has `label` loaded the `label` column without a word."""
    from modeling.data import load_corpus

    own_folder(tmp_path / "own", label_header="label")
    with pytest.raises(
        CorpusError, match=r"no column 'emotoin' \(label_column\); its columns: \['file_name', 'label'"
    ):
        load_corpus("hub", str(tmp_path / "own"), label_column="emotoin")
    with pytest.raises(CorpusError, match=r"no column 'client' \(speaker_column\)"):
        load_corpus("hub", str(tmp_path / "own"), speaker_column="client")
    with pytest.raises(CorpusError, match=r"data.loader_args \['revision'\] do not apply to a local audio folder"):
        load_corpus("hub", str(tmp_path / "own"), revision="v1")


def test_the_datasets_audiofolder_idiom_reads_data_dir_without_torchcodec(tmp_path):
    """`root: audiofolder` + `loader_args: {data_dir: ...}` (datasets' own idiom) failed with DatasetGenerationError
    without torchcodec; it reads the same rows as the folder itself, and `split` is honoured as datasets does."""
    from modeling.data import load_corpus

    rows = own_folder(tmp_path / "own")
    dataset = load_corpus("hub", "audiofolder", data_dir=str(tmp_path / "own"), label_column="emotion")
    assert list(dataset["label_text"]) == [r["label"] for r in rows]
    assert dataset["audio"] == load_corpus("hub", str(tmp_path / "own"), label_column="emotion")["audio"]

    counts = make_split_folders(tmp_path / "splits")
    train = load_corpus("hub", "audiofolder", data_dir=str(tmp_path / "splits"))  # split: train, as datasets
    assert len(train) == counts["train"] and "split" not in train.column_names
    every = load_corpus("hub", str(tmp_path / "splits"), split=None)
    assert len(every) == sum(counts.values()) and set(every["split"]) == {"train", "validation", "test"}
    with pytest.raises(CorpusError, match=r"no split 'dev'; it has \['test', 'train', 'validation'\]"):
        load_corpus("hub", str(tmp_path / "splits"), split="dev")


def test_label_folders_take_every_format_the_folder_searches_of_predict_py_take(tmp_path):
    """The `<label>/<file>` layout searched 4 extensions (.wav .flac .ogg .mp3) where predict.py's folder search took
    11: an AIFF or Opus corpus lost those files without a word. One list now (`modeling.audio.AUDIO_EXTENSIONS`)."""
    from helpers import polish3_clips

    from modeling.audio import load_audio

    waveform = load_audio(polish3_clips(1)[0][0])
    written = {}
    for label, suffix, subtype in [("happy", ".aiff", "PCM_16"), ("sad", ".opus", "OPUS"), ("sad", ".flac", None)]:
        path = tmp_path / label / f"clip{suffix}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, waveform, 16000, subtype=subtype, format="OGG" if suffix == ".opus" else None)
        written[str(path)] = label
    dataset = load_audio_folder(tmp_path)
    assert dict(zip(dataset["audio"], dataset["label_text"])) == written
    assert len(dataset) == 3 and all(
        d == pytest.approx(len(waveform) / 16000, abs=0.01) for d in dataset["duration_s"]
    )
