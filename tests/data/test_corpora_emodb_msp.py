"""EmoDB and MSP-Podcast loaders on generated trees in their official layouts (tiny real WAV files): counts,
speakers, genders, labels, partitions; their facts and configs."""

from collections import Counter

import pytest
from fake_corpora import make_emodb_tree, make_msp_podcast_tree
from helpers import REPO

from modeling.data import CorpusError, corpus_info, load_corpus
from modeling.data.emodb import EMODB, FEMALE_SPEAKERS, MALE_SPEAKERS
from modeling.data.folds import make_folds
from modeling.data.msp_podcast import load_msp_podcast
from modeling.training.run_config import resolve_config


def test_emodb_official_layout(tmp_path, caplog):
    written = make_emodb_tree(tmp_path / "emodb")
    dataset = load_corpus("emodb", tmp_path / "emodb")
    assert len(dataset) == 535 and "ignored 1 files" in caplog.text
    assert dataset.features["label"].names == [
        "anger",
        "boredom",
        "disgust",
        "fear",
        "happiness",
        "sadness",
        "neutral",
    ]
    assert sorted(set(dataset["speaker"])) == sorted(MALE_SPEAKERS + FEMALE_SPEAKERS)
    genders = dict(zip(dataset["speaker"], dataset["gender"]))
    assert {s for s, g in genders.items() if g == "male"} == {"03", "10", "11", "12", "15"}
    assert {s for s, g in genders.items() if g == "female"} == {"08", "09", "13", "14", "16"}
    letters = {
        "anger": "W",
        "boredom": "L",
        "disgust": "E",
        "fear": "A",
        "happiness": "F",
        "sadness": "T",
        "neutral": "N",
    }
    expected = Counter(letter for _, letter in written.values())
    assert Counter(letters[name] for name in dataset["label_text"]) == expected
    row = dataset["audio"].index(str((tmp_path / "emodb" / "wav" / "03a01Fa.wav").resolve()))  # the example
    assert (dataset[row]["speaker"], dataset[row]["label_text"], dataset[row]["gender"]) == ("03", "happiness", "male")
    folds = make_folds(dataset, EMODB.folds, EMODB.num_folds)
    assert len(folds) == 10 and all(len(f.test) == 1 and len(f.validation) == 1 for f in folds)
    assert corpus_info("emodb").license == "other" and "Burkhardt" in corpus_info("emodb").citation
    assert resolve_config(REPO / "configs" / "emodb.yaml")["data"]["loader"] == "emodb"


def test_msp_podcast_official_layout_4_classes(tmp_path):
    make_msp_podcast_tree(tmp_path / "msp")
    dataset = load_msp_podcast(tmp_path / "msp")
    by_file = {a.rsplit("/", 1)[-1]: row for a, row in zip(dataset["audio"], dataset.to_list())}
    # 4 classes N H S A: U, X, C, O, D, F and the unlabelled Test3 row are left out
    assert sorted(by_file) == [
        "MSP-PODCAST_0001_0001.wav",
        "MSP-PODCAST_0001_0002.wav",
        "MSP-PODCAST_0001_0003.wav",
        "MSP-PODCAST_0002_0001.wav",
        "MSP-PODCAST_0003_0001.wav",
        "MSP-PODCAST_0003_0003.wav",
        "MSP-PODCAST_0004_0002.wav",
    ]
    assert dataset.features["label"].names == ["neutral", "happy", "sad", "angry"]
    assert Counter(dataset["split"]) == {"train": 3, "validation": 1, "test": 2, "test2": 1}
    assert by_file["MSP-PODCAST_0001_0003.wav"]["speaker"] == "Unknown"
    assert by_file["MSP-PODCAST_0001_0003.wav"]["gender"] == ""
    assert (by_file["MSP-PODCAST_0003_0001.wav"]["label_text"], by_file["MSP-PODCAST_0003_0001.wav"]["gender"]) == (
        "angry",
        "female",
    )
    assert by_file["MSP-PODCAST_0002_0001.wav"]["split"] == "validation"
    assert all(d is not None and d > 0 for d in dataset["duration_s"])


def test_msp_podcast_8_classes_and_another_test_partition(tmp_path):
    make_msp_podcast_tree(tmp_path / "msp")
    dataset = load_corpus("msp_podcast", tmp_path / "msp", num_classes=8, test_partition="Test2")
    assert len(dataset) == 11  # all but O, X and the unlabelled Test3 row
    assert Counter(dataset["label_text"]) == {
        "neutral": 2,
        "happy": 2,
        "angry": 2,
        "surprise": 1,
        "sad": 1,
        "contempt": 1,
        "disgust": 1,
        "fear": 1,
    }
    assert Counter(dataset["split"]) == {"train": 4, "validation": 2, "test1": 3, "test": 2}
    with pytest.raises(CorpusError, match="num_classes must be one of \\[4, 8\\], got 6"):
        load_msp_podcast(tmp_path / "msp", num_classes=6)


def test_msp_podcast_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="labels_consensus.csv: not found"):
        load_msp_podcast(tmp_path)
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\nx.wav,A\n")
    with pytest.raises(CorpusError, match=r"missing column\(s\) \['Gender', 'SpkrID', 'Split_Set'\]"):
        load_msp_podcast(tmp_path)
    info = corpus_info("msp_podcast")
    assert info.folds == "predefined" and "Lotfian" in info.citation
    config = resolve_config(REPO / "configs" / "msp_podcast.yaml")
    assert config["data"]["folds"] == "predefined" and config["data"]["loader_args"]["test_partition"] == "Test1"
