"""No loader loads a recording twice: a nested copy of the corpus folder (`Actor_01/Actor_01/...`), a label file
copied beside itself, a CSV row repeated. Each loader finds the duplicates by the corpus's own recording id, keeps
the outer copy, and warns with the count."""

import logging
import shutil

import pytest
from fake_corpora import (
    make_crema_d_tree,
    make_emodb_tree,
    make_iemocap_tree,
    make_msp_podcast_tree,
    make_ravdess_tree,
    wav_bytes,
)
from helpers import POLISH3

from modeling.data import load_corpus


@pytest.fixture(autouse=True)
def _warnings(caplog):
    caplog.set_level(logging.WARNING, logger="modeling.data.corpus")


def assert_reported(caplog, count):
    messages = [r.getMessage() for r in caplog.records if "duplicate file(s)" in r.getMessage()]
    assert len(messages) == 1 and messages[0].split(": ", 1)[1].startswith(f"{count} duplicate file(s)"), messages


def nest(folder):
    """Copy `folder` into itself (`Actor_01/Actor_01/...`), as archives are often unpacked."""
    shutil.copytree(folder, folder / folder.name)


def test_ravdess_nested_actor_folder(tmp_path, caplog):
    root = make_ravdess_tree(tmp_path / "ravdess")
    before = load_corpus("ravdess", root)
    nest(root / "Actor_01")
    after = load_corpus("ravdess", root)
    assert after["audio"] == before["audio"] and len(after) == 60  # 15 speech files × 4 actors, the outer copies
    assert_reported(caplog, 15)


def test_crema_d_nested_audio_folder(tmp_path, caplog):
    root = make_crema_d_tree(tmp_path / "crema")
    before = load_corpus("crema_d", root)
    nest(root / "AudioWAV")
    assert load_corpus("crema_d", root)["audio"] == before["audio"]
    assert_reported(caplog, 48)


def test_emodb_nested_wav_folder(tmp_path, caplog):
    root = tmp_path / "emodb"
    make_emodb_tree(root, count=40)
    before = load_corpus("emodb", root)
    nest(root / "wav")
    after = load_corpus("emodb", root)
    assert after["audio"] == before["audio"] and len(after) == 40
    assert_reported(caplog, 40)


def test_iemocap_utterance_labelled_twice(tmp_path, caplog):
    root = make_iemocap_tree(tmp_path / "iemocap")
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation"
    shutil.copy(evaluation / "Ses01F_impro05.txt", evaluation / "Ses01F_impro05 (copy).txt")
    dataset = load_corpus("iemocap", root)
    assert len(dataset) == 5531 and len(set(dataset["audio"])) == 5531
    assert_reported(
        caplog, 272
    )  # that dialog's 4-class lines: 1085 session-1 lines dealt over 4 dialogs, 272 to the first


def test_msp_podcast_row_listed_twice(tmp_path, caplog):
    root = make_msp_podcast_tree(tmp_path / "msp")
    csv_path = root / "Labels" / "labels_consensus.csv"
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines + [lines[1], lines[2]]) + "\n")
    dataset = load_corpus("msp_podcast", root)
    assert len(dataset) == 7 and len(set(dataset["audio"])) == 7
    assert_reported(caplog, 2)


def test_audio_folder_metadata_row_listed_twice(tmp_path, caplog):
    root = tmp_path / "own"
    (root / "a").mkdir(parents=True)
    for name in ("x.wav", "y.wav"):
        (root / "a" / name).write_bytes(wav_bytes())
    (root / "metadata.csv").write_text("file,label,speaker\na/x.wav,anger,s1\na/y.wav,fear,s1\n./a/x.wav,anger,s1\n")
    assert len(load_corpus("audio_folder", root)) == 2
    assert_reported(caplog, 1)


def test_audio_folder_nested_label_folder_but_same_names_elsewhere_stay(tmp_path, caplog):
    root = tmp_path / "folders"
    for label, seed in (("anger", 0), ("fear", 1)):
        for i in range(3):
            path = root / label / f"take{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(wav_bytes(seed=10 * seed + i))
    (root / "anger" / "m2").mkdir()
    (root / "anger" / "m2" / "take0.wav").write_bytes(wav_bytes(seed=99))  # same name, another recording
    nest(root / "fear")
    dataset = load_corpus("audio_folder", root)
    assert len(dataset) == 7 and sum(1 for a in dataset["audio"] if "/fear/fear/" in a) == 0
    assert_reported(caplog, 3)


def test_polish3_has_no_duplicates(caplog):
    assert len(load_corpus("audio_folder", POLISH3, labels=["anger", "fear", "neutral"])) == 450
    assert not [r for r in caplog.records if "duplicate" in r.getMessage()]


def test_hub_dataset_row_repeated(tmp_path, caplog):
    from datasets import ClassLabel, Dataset, Features, Value

    clips = [wav_bytes(800, seed=i) for i in range(3)]
    source = Dataset.from_dict(
        {
            "speech": [
                {"path": "a.wav", "bytes": clips[0]},
                {"path": "b.wav", "bytes": clips[1]},
                {"path": "a.wav", "bytes": clips[0]},  # the same recording again
                {"path": "a.wav", "bytes": clips[2]},
            ],  # same name, another recording: kept
            "emotion": [0, 1, 0, 1],
            "client": ["s1", "s1", "s1", "s2"],
        },
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
    dataset = load_corpus("hub", str(tmp_path), audio_column="speech", label_column="emotion", speaker_column="client")
    assert len(dataset) == 3 and list(dataset["speaker"]) == ["s1", "s1", "s2"]
    assert [a["bytes"] for a in dataset["audio"]] == [clips[0], clips[1], clips[2]]
    assert_reported(caplog, 1)


@pytest.mark.bad_input
def test_duplicate_metadata_rows_with_conflicting_labels_are_an_error_naming_the_rows(tmp_path):
    """Issue 19: the first label won and the warning said only "1 duplicate file(s) ... loaded once"; a duplicate row
    with an unknown label (`hapy`) was never reported, because the label check ran after de-duplication."""
    from modeling.data import CorpusError

    root = tmp_path / "own"
    (root / "a").mkdir(parents=True)
    for name in ("x.wav", "y.wav", "z.wav"):
        (root / "a" / name).write_bytes(wav_bytes())
    (root / "metadata.csv").write_text(
        "file,label,speaker\na/x.wav,happy,s1\na/y.wav,fear,s1\n./a/x.wav,hapy,s1\na/z.wav,fear,s1\na/y.wav,anger,s2\n"
    )
    with pytest.raises(CorpusError) as error:
        load_corpus("audio_folder", root, labels=["anger", "fear", "happy"])
    message = str(error.value)
    assert "2 recording(s) listed more than once with different labels" in message
    assert "row 2: 'happy'" in message and "row 4: 'hapy'" in message  # x.wav
    assert "row 3: 'fear'" in message and "row 6: 'anger'" in message  # y.wav


@pytest.mark.bad_input
def test_one_recording_in_two_label_folders_is_an_error(tmp_path):
    from modeling.data import CorpusError

    root = tmp_path / "folders"
    for label in ("anger", "fear"):
        (root / label).mkdir(parents=True)
        (root / label / "other.wav").write_bytes(wav_bytes(seed=len(label)))  # same name, other bytes: two recordings
    (root / "anger" / "take.wav").write_bytes(wav_bytes(seed=7))
    (root / "fear" / "take.wav").write_bytes(wav_bytes(seed=7))  # the same recording filed under two labels
    with pytest.raises(CorpusError, match=r"(?s)1 recording\(s\) .*different labels.*anger/take.wav: 'anger'.*"):
        load_corpus("audio_folder", root)


@pytest.mark.bad_input
def test_hub_rows_of_one_recording_with_conflicting_labels_are_an_error(tmp_path):
    from datasets import Dataset

    from modeling.data import CorpusError

    clip = wav_bytes(800, seed=3)
    source = Dataset.from_dict(
        {
            "audio": [{"path": "a.wav", "bytes": clip}, {"path": "a.wav", "bytes": clip}],
            "label": ["calm", "angry"],
        }
    )
    (tmp_path / "data").mkdir()
    source.to_parquet(str(tmp_path / "data" / "train-00000.parquet"))
    with pytest.raises(CorpusError, match=r"(?s)different labels.*row 1: 'calm'.*row 2: 'angry'"):
        load_corpus("hub", str(tmp_path))
