"""Corpus loaders: IEMOCAP reproduces Table 1, CREMA-D / RAVDESS file names, own folders, local Hub-style data."""

import csv
from collections import Counter

import pytest
from datasets import ClassLabel, Dataset, Features, Value
from fake_corpora import (
    IEMOCAP_TABLE1,
    IEMOCAP_TOTAL,
    make_crema_d_tree,
    make_iemocap_tree,
    make_ravdess_tree,
    wav_bytes,
)
from helpers import NEMO4, POLISH3, POLISH3_LABELS, REPO

from modeling.data.audio_folder import load_audio_folder
from modeling.data.catalog import CORPORA, corpus_info, load_corpus
from modeling.data.corpus import CorpusError, select_speakers
from modeling.data.crema_d import CREMA_D, load_crema_d
from modeling.data.hub import load_hub_dataset
from modeling.data.iemocap import IEMOCAP, load_iemocap
from modeling.data.nemo4 import NEMO4 as NEMO4_INFO
from modeling.data.polish3 import POLISH3 as POLISH3_INFO
from modeling.data.ravdess import RAVDESS, load_ravdess
from modeling.training.run_config import resolve_config


COLUMNS = ["audio", "label", "label_text", "speaker", "gender", "session", "duration_s"]


@pytest.fixture(scope="session")
def iemocap(tmp_path_factory):
    return load_iemocap(make_iemocap_tree(tmp_path_factory.mktemp("IEMOCAP_full_release")))


def test_iemocap_reproduces_table1(iemocap):
    assert iemocap.column_names == COLUMNS
    assert iemocap.features["label"].names == list(IEMOCAP.labels)
    assert len(iemocap) == IEMOCAP_TOTAL == 5531
    counts = Counter(zip(iemocap["session"], iemocap["label_text"]))
    for session, expected in IEMOCAP_TABLE1.items():
        assert {label: counts[session, label] for label in expected} == expected, f"session {session}"
    totals = Counter(iemocap["label_text"])
    assert totals == {"angry": 1103, "happy": 1636, "sad": 1084, "neutral": 1708}


def test_iemocap_speaker_comes_from_the_utterance_not_the_dialog(iemocap):
    rows = {row["audio"].rsplit("/", 1)[-1]: row for row in iemocap}
    trap = rows["Ses01F_impro05_M013.wav"]
    assert trap["speaker"] == "Ses01M" and trap["gender"] == "male" and trap["session"] == 1
    assert trap["audio"].endswith("Session1/sentences/wav/Ses01F_impro05/Ses01F_impro05_M013.wav")
    assert rows["Ses03M_script02_2b_F000.wav"]["speaker"] == "Ses03F"
    assert sorted(set(iemocap["speaker"])) == [f"Ses0{s}{g}" for s in range(1, 6) for g in "FM"]
    assert set(zip(iemocap["speaker"], iemocap["gender"])) == {
        (f"Ses0{s}{g}", "female" if g == "F" else "male") for s in range(1, 6) for g in "FM"
    }


def test_iemocap_labels_and_audio(iemocap):
    assert set(iemocap["label_text"]) == set(IEMOCAP.labels)  # exc merged into happy, xxx/fru/... dropped
    assert min(iemocap["label"]) == 0
    first = iemocap[0]
    assert first["duration_s"] == pytest.approx(480 / 16000)


def test_iemocap_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="EmoEvaluation"):
        load_iemocap(tmp_path)


@pytest.mark.bad_input
def test_a_mistyped_corpus_folder_names_the_closest_one(tmp_path):
    """`train.py --data-dir data/polish` said only "corpus folder does not exist" (predict.py suggests names)."""
    make_crema_d_tree(tmp_path / "CREMA-D")
    with pytest.raises(FileNotFoundError) as caught:
        load_crema_d(tmp_path / "CREMA_D")
    assert str(caught.value) == (
        f"{tmp_path / 'CREMA_D'}: corpus folder does not exist. Did you mean {tmp_path / 'CREMA-D'}?"
    )


def test_crema_d(tmp_path):
    dataset = load_crema_d(make_crema_d_tree(tmp_path))
    assert dataset.column_names == COLUMNS
    assert len(dataset) == 4 * 6 * 2  # the stray file is ignored
    assert dataset.features["label"].names == list(CREMA_D.labels)
    row = next(r for r in dataset if r["audio"].endswith("1002_IEO_FEA_HI.wav"))
    assert (row["speaker"], row["gender"], row["label_text"], row["session"]) == ("1002", "female", "fear", -1)
    assert Counter(dataset["label_text"]) == {label: 8 for label in CREMA_D.labels}
    assert dict(Counter(zip(dataset["speaker"], dataset["gender"]))) == {
        ("1001", "male"): 12,
        ("1002", "female"): 12,
        ("1003", "male"): 12,
        ("1004", "female"): 12,
    }


def test_crema_d_without_demographics_has_unknown_gender(tmp_path):
    dataset = load_crema_d(make_crema_d_tree(tmp_path, with_demographics=False))
    assert set(dataset["gender"]) == {""}


def test_ravdess(tmp_path):
    dataset = load_ravdess(make_ravdess_tree(tmp_path))
    assert dataset.features["label"].names == list(RAVDESS.labels)
    assert len(dataset) == 4 * 15  # speech only: neutral has 1 intensity, 7 emotions have 2
    assert Counter(dataset["label_text"])["neutral"] == 4
    assert Counter(dataset["label_text"])["surprise"] == 8
    assert dict(Counter(zip(dataset["speaker"], dataset["gender"]))) == {
        ("01", "male"): 15,
        ("02", "female"): 15,
        ("03", "male"): 15,
        ("04", "female"): 15,
    }
    with_song = load_ravdess(tmp_path, include_song=True)
    assert len(with_song) == 4 * (15 + 8)


def test_audio_folder_with_metadata_reads_polish3():
    dataset = load_corpus("audio_folder", POLISH3, labels=POLISH3_LABELS)
    assert dataset.column_names == COLUMNS
    assert len(dataset) == 450
    assert dataset.features["label"].names == POLISH3_LABELS
    assert Counter(dataset["label_text"]) == {"anger": 150, "fear": 150, "neutral": 150}
    assert Counter(dataset["speaker"]) == {f"m{i}": 90 for i in range(1, 6)}
    assert set(dataset["gender"]) == {"male"}
    with open(POLISH3 / "metadata.csv") as f:
        first = next(csv.DictReader(f))
    assert dataset[0]["audio"] == str((POLISH3 / first["file"]).resolve())
    assert dataset[0]["duration_s"] == pytest.approx(float(first["duration_s"]))
    assert dataset[0]["label"] == POLISH3_LABELS.index(first["label"])


def test_audio_folder_infers_sorted_labels_and_marks_unknown_ones(tmp_path):
    clip = wav_bytes()
    rows = [
        ("a.wav", "sad", "s1", "F"),
        ("b.wav", "angry", "s2", "m"),
        ("c.wav", "", "s2", ""),
        ("d.wav", "sda", "s1", ""),
    ]
    for name, *_ in rows:
        (tmp_path / name).write_bytes(clip)
    (tmp_path / "metadata.csv").write_text(
        "file,label,speaker,gender\n" + "".join(f"{n},{l},{s},{g}\n" for n, l, s, g in rows)
    )
    inferred = load_audio_folder(tmp_path)
    assert inferred.features["label"].names == ["angry", "sad", "sda"]
    assert list(inferred["label"]) == [1, 0, -1, 2]
    expected = load_audio_folder(tmp_path, labels=["sad", "angry"])
    assert list(expected["label"]) == [0, 1, -1, -1]
    assert list(expected["label_text"]) == ["sad", "angry", "", "sda"]
    assert list(expected["gender"]) == ["female", "male", "", ""]
    assert inferred[0]["duration_s"] == pytest.approx(480 / 16000)  # read from the header: no duration_s column


def test_audio_folder_metadata_missing_columns(tmp_path):
    (tmp_path / "metadata.csv").write_text("path,emotion\nx.wav,sad\n")
    with pytest.raises(ValueError, match=r"metadata.csv: row 1: missing column\(s\) \['file', 'label'\]"):
        load_audio_folder(tmp_path)


def test_audio_folder_label_subfolders(tmp_path):
    clip = wav_bytes()
    for label in ("happy", "sad"):
        for speaker in ("spk1", "spk2"):
            (tmp_path / label).mkdir(exist_ok=True)
            (tmp_path / label / f"{speaker}_{label}_01.flac").write_bytes(clip)
    dataset = load_audio_folder(tmp_path, speaker_regex=r"^(spk\d+)_")
    assert dataset.features["label"].names == ["happy", "sad"]
    assert sorted(zip(dataset["label_text"], dataset["speaker"])) == [
        ("happy", "spk1"),
        ("happy", "spk2"),
        ("sad", "spk1"),
        ("sad", "spk2"),
    ]
    assert set(load_audio_folder(tmp_path)["speaker"]) == {""}


def test_hub_loader_on_a_local_parquet_dataset(tmp_path):
    """`load_hub_dataset` goes through `datasets.load_dataset`; a local folder stands in for a Hub id."""
    clip = wav_bytes(800)
    source = Dataset.from_dict(
        {
            "speech": [{"path": f"{i}.wav", "bytes": clip} for i in range(4)],
            "emotion": [0, 1, 1, 0],
            "client": ["a", "a", "b", "b"],
        },
        # A struct column: encoding an `Audio` feature needs torchcodec (see the ecosystem notes); the loader casts it.
        features=Features(
            {
                "speech": {"path": Value("string"), "bytes": Value("binary")},
                "emotion": ClassLabel(names=["calm", "angry"]),
                "client": Value("string"),
            }
        ),
    )
    (tmp_path / "data").mkdir()
    source.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    dataset = load_hub_dataset(str(tmp_path), audio_column="speech", label_column="emotion", speaker_column="client")
    assert dataset.column_names == COLUMNS
    assert dataset.features["label"].names == ["calm", "angry"]
    assert list(dataset["label"]) == [0, 1, 1, 0]
    assert list(dataset["label_text"]) == ["calm", "angry", "angry", "calm"]
    assert dataset[0]["audio"]["bytes"] == clip
    assert dataset[0]["duration_s"] == pytest.approx(800 / 16000)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['speaker'\]"):
        load_hub_dataset(str(tmp_path), audio_column="speech", label_column="emotion", speaker_column="speaker")


def test_unknown_loader_and_loader_arguments():
    with pytest.raises(CorpusError, match="data.loader must be one of"):
        load_corpus("timit", "x")
    with pytest.raises(
        CorpusError, match=r"unknown argument\(s\) \['lables'\] for loader 'audio_folder'; expected \['labels'"
    ):
        load_corpus("audio_folder", POLISH3, lables=["a"])


def test_select_speakers_is_balanced_and_deterministic():
    dataset = load_audio_folder(POLISH3, labels=POLISH3_LABELS)
    subset = select_speakers(dataset, speakers=["m2", "m4"], max_per_speaker=7)
    assert Counter(subset["speaker"]) == {"m2": 7, "m4": 7}
    assert Counter(zip(subset["speaker"], subset["label_text"]))[("m2", "anger")] == 3
    assert {label for speaker, label in zip(subset["speaker"], subset["label_text"]) if speaker == "m4"} == set(
        POLISH3_LABELS
    )
    assert list(select_speakers(dataset, ["m2", "m4"], 7)["audio"]) == list(subset["audio"])
    with pytest.raises(ValueError, match=r"data.speakers: \['x9'\] not in the corpus"):
        select_speakers(dataset, speakers=["x9"])


def test_corpus_facts_pin_the_label_order_and_license():
    """The label order is the model's id2label: changing it silently would break every published checkpoint."""
    assert IEMOCAP.labels == ("neutral", "happy", "sad", "angry")
    assert CREMA_D.labels == ("neutral", "happy", "sad", "angry", "fear", "disgust")
    assert RAVDESS.labels == ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
    assert list(POLISH3_INFO.labels) == POLISH3_LABELS and NEMO4_INFO.labels == ("neutral", "happy", "sad", "angry")
    assert POLISH3_INFO.id2label == {0: "anger", 1: "fear", 2: "neutral"}
    licenses = {name: info.license for name, info in CORPORA.items()}
    assert licenses == {
        "iemocap": "other",
        "crema_d": "odbl",
        "ravdess": "cc-by-nc-sa-4.0",
        "polish3": "cc-by-4.0",
        "nemo4": "cc-by-nc-sa-4.0",
        "emodb": "other",
        "msp_podcast": "other",
    }
    for info in CORPORA.values():
        assert (
            info.citation
            and info.card_fields()["terms"].endswith(info.citation)
            and info.language in ("en", "pl", "de")
        )
    assert "https://doi.org/10.34808/h46c-hb44" in POLISH3_INFO.citation


@pytest.mark.parametrize(
    "loader, root, expected",
    [
        ("iemocap", "data/IEMOCAP_full_release", "iemocap"),
        ("crema_d", None, "crema_d"),
        ("ravdess", "/corpora/anything", "ravdess"),
        ("audio_folder", "data/polish3", "polish3"),
        ("audio_folder", "../shared/data/nemo4/", "nemo4"),
        ("audio_folder", "/corpora/CREMA-D", "crema_d"),
        ("hub", "someone/polish3", "polish3"),
        ("hub", "amu-cai/nEMO", None),  # the full 6-class Hub dataset is not the nemo4 subset
        ("audio_folder", "data/my_corpus", None),
        ("audio_folder", None, None),
        (None, None, None),
    ],
)
def test_corpus_info_lookup(loader, root, expected):
    info = corpus_info(loader, root)
    assert (info and info.name) == expected
    if info is not None:
        assert info.hub_id == (root if loader == "hub" else CORPORA[expected].hub_id)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_follow_their_corpus_facts(path):
    data = resolve_config(path)["data"]
    info = corpus_info(data["loader"], data["root"])
    assert info is not None and info.loader == data["loader"]
    assert (data["folds"], data["num_folds"]) == (info.folds, info.num_folds)
    assert data["loader_args"].get("labels", list(info.labels)) == list(info.labels)


@pytest.mark.parametrize("info, root", [(POLISH3_INFO, POLISH3), (NEMO4_INFO, NEMO4)], ids=["polish3", "nemo4"])
def test_audio_folder_corpora_have_the_labels_of_their_facts(info, root):
    if root is None:
        pytest.skip(f"{info.name} is not present")
    with open(root / "metadata.csv", newline="", encoding="utf-8") as f:
        assert {row["label"] for row in csv.DictReader(f)} == set(info.labels)


def test_polish3_duration_s_is_the_file_header_duration(tmp_path):
    """`duration_s` (float64 seconds) of the corpus loaded from polish3: metadata.csv's (3 decimals) and, with that
    column dropped, read from the headers; both equal soundfile's header duration."""
    import soundfile as sf

    dataset = load_corpus("audio_folder", POLISH3, labels=POLISH3_LABELS)
    assert dataset.features["duration_s"] == Value("float64") and "duration" not in dataset.column_names
    headers = [sf.info(path).duration for path in dataset["audio"]]
    assert list(dataset["duration_s"]) == pytest.approx(headers, abs=5e-4)
    with open(POLISH3 / "metadata.csv") as f:
        rows = list(csv.DictReader(f))
    (tmp_path / "metadata.csv").write_text(
        "file,label,speaker\n" + "".join(f"{POLISH3 / r['file']},{r['label']},{r['speaker']}\n" for r in rows)
    )
    measured = load_corpus("audio_folder", tmp_path, labels=POLISH3_LABELS)
    assert list(measured["audio"]) == list(dataset["audio"])
    assert list(measured["duration_s"]) == headers


def test_hub_dataset_with_a_legacy_duration_column_becomes_duration_s(tmp_path):
    """A user's `duration` column (lhotse, SpeechBrain: seconds) becomes the corpus's `duration_s`; missing values
    are read from the headers; a `duration_s` column wins over it."""
    import soundfile as sf

    clips = [str(path) for path in sorted((POLISH3 / "audio").glob("m2.*.flac"))[:4]]
    given = [1.5, None, 2.5, None]
    source = Dataset.from_dict(
        {"audio": clips, "label": ["anger", "fear", "neutral", "anger"], "duration": given},
        features=Features({"audio": Value("string"), "label": Value("string"), "duration": Value("float64")}),
    )
    source.save_to_disk(str(tmp_path / "legacy"))
    dataset = load_hub_dataset(str(tmp_path / "legacy"), labels=POLISH3_LABELS)
    assert dataset.column_names == COLUMNS
    assert list(dataset["duration_s"]) == [1.5, sf.info(clips[1]).duration, 2.5, sf.info(clips[3]).duration]
    source.add_column("duration_s", [0.5, 0.6, 0.7, 0.8]).save_to_disk(str(tmp_path / "both"))
    assert list(load_hub_dataset(str(tmp_path / "both"), labels=POLISH3_LABELS)["duration_s"]) == [0.5, 0.6, 0.7, 0.8]


def test_a_parquet_cache_written_before_duration_s_is_read(tmp_path):
    """`loader: hub` caches a parquet folder as Arrow files with the measured lengths; those written before the
    rename hold a `duration` column. They are read as they are (not rewritten) and give the same `duration_s`."""
    import pyarrow as pa
    import soundfile as sf
    from test_own_data import write_parquet_corpus

    clips = sorted((POLISH3 / "audio").glob("m3.*.flac"))[:3]
    write_parquet_corpus(tmp_path, 3, clips)
    cache = tmp_path / "cache"
    fresh = load_hub_dataset(str(tmp_path), label_column="emotion", cache_dir=str(cache))
    (arrow,) = cache.rglob("train.arrow")
    with pa.OSFile(str(arrow)) as source:
        table = pa.ipc.open_stream(source).read_all()
    assert table.column_names[-1] == "duration_s"
    old = table.rename_columns([*table.column_names[:-1], "duration"])  # as the cache was written before
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, old.schema) as writer:
        writer.write_table(old)
    again = load_hub_dataset(str(tmp_path), label_column="emotion", cache_dir=str(cache))
    with pa.OSFile(str(arrow)) as source:
        assert pa.ipc.open_stream(source).schema.names[-1] == "duration"  # the old cache file was used
    assert list(again["duration_s"]) == list(fresh["duration_s"]) == [sf.info(clip).duration for clip in clips]
