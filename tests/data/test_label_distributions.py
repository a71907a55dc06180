"""Soft labels: annotator votes → label distributions (IEMOCAP's evaluator lines, MSP-Podcast's detailed labels, a
distribution column of own data), by hand; bad distributions reported before training."""

import json

import pytest
from datasets import Dataset
from fake_corpora import make_msp_podcast_tree, wav_bytes
from helpers import POLISH3
from runs import write_config

from modeling.data.audio_folder import load_audio_folder
from modeling.data.checks import DatasetCheckError
from modeling.data.corpus import CorpusError
from modeling.data.hub import load_hub_dataset
from modeling.data.iemocap import EVALUATOR_LABEL_MAP, evaluator_labels, load_iemocap
from modeling.data.msp_podcast import load_msp_podcast
from modeling.data.votes import vote_distribution
from modeling.training.experiment import checked_dataset
from modeling.training.run_config import resolve_config


IEMOCAP_CLASSES = ("neutral", "happy", "sad", "angry")


def test_votes_by_hand_shares_outside_classes_ties_and_no_votes():
    votes = [["Neutral state", "Frustration"], ["Neutral state", "Excited"], ["Anger"], ["Other"]]
    # neutral 1/2 + 1/2, happy 1/2 (excited), angry 1; frustration's 1/2 and "other" dropped: total 2.5
    assert vote_distribution(votes, EVALUATOR_LABEL_MAP, IEMOCAP_CLASSES, "neutral") == pytest.approx(
        [1 / 2.5, 0.5 / 2.5, 0.0, 1 / 2.5]
    )
    tie = vote_distribution([["Anger"], ["Sadness"]], EVALUATOR_LABEL_MAP, IEMOCAP_CLASSES, "angry")
    assert tie == [0.0, 0.0, 0.5, 0.5]  # a tie stays a tie; the consensus label stays the corpus's
    none = vote_distribution([["Frustration"], ["Other"]], EVALUATOR_LABEL_MAP, IEMOCAP_CLASSES, "sad")
    assert none == [0.0, 0.0, 1.0, 0.0]  # no vote in the classes: the one-hot of the consensus


def test_iemocap_evaluator_line_format():
    assert evaluator_labels("C-E1:\tNeutral state;\tFrustration;\t()") == ("E1", ["Neutral state", "Frustration"])
    assert evaluator_labels("C-F1:\tAnger;\t(threatening; loud)") == ("F1", ["Anger"])
    assert evaluator_labels("A-E3:\tval 2; act 4; dom  4;\t()") is None


# Two utterances of one dialog in the official EmoEvaluation format (TAB separated; comments in parentheses).
EMO_EVALUATION = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral state;\t()
C-E3:\tNeutral state;\tFrustration;\t()
C-E4:\tNeutral state;\tExcited;\t()
C-F1:\tOther;\t(curious)
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M001\tang\t[1.5000, 4.0000, 4.5000]
C-E1:\tAnger;\tFrustration;\t()
C-E3:\tAnger;\t()
C-M1:\tSadness;\t(hurt)
A-E1:\tval 1; act 4; dom  5;\t(threatening, belligerent)

[12.0000 - 13.0000]\tSes01F_impro01_F002\tfru\t[2.0000, 3.0000, 3.0000]
C-E2:\tFrustration;\t()
"""


def test_iemocap_distributions_from_the_evaluator_lines(tmp_path):
    dialog = tmp_path / "Session1" / "dialog"
    (dialog / "EmoEvaluation").mkdir(parents=True)
    (dialog / "EmoEvaluation" / "Ses01F_impro01.txt").write_text(EMO_EVALUATION)
    for utterance in ("Ses01F_impro01_F000", "Ses01F_impro01_M001", "Ses01F_impro01_F002"):
        path = tmp_path / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / f"{utterance}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(wav_bytes())
    dataset = load_iemocap(tmp_path, label_distribution=True)
    assert dataset["label_text"] == ["neutral", "angry"]  # frustration (fru) is not one of the 4 classes
    # F000: E2 neutral 1; E3 neutral 1/2 (+ frustration); E4 neutral 1/2 + happy 1/2; F1 other → 2 + 0.5 = 2.5
    # M001: E1 angry 1/2 (+ frustration); E3 angry 1; M1 sad 1 → 2.5
    first, second = dataset["label_distribution"]
    assert first == pytest.approx([2 / 2.5, 0.5 / 2.5, 0, 0]) and second == pytest.approx([0, 0, 1 / 2.5, 1.5 / 2.5])
    assert "label_distribution" not in load_iemocap(tmp_path).column_names


@pytest.mark.parametrize("layout", ["EmoClass_Major", "EmoDetail", "json"])
def test_msp_podcast_distributions_from_the_detailed_labels(tmp_path, layout):
    root = make_msp_podcast_tree(tmp_path / "msp")
    annotations = {
        "MSP-PODCAST_0001_0001.wav": ["Angry", "Angry", "Contempt", "Other", "Sad"],
        "MSP-PODCAST_0001_0002.wav": ["Happy", "Neutral"],
    }
    labels = root / "Labels"
    if layout == "json":
        content = {
            name: {"Workers": [{"Name": f"WORKER{i:07d}", "EmoClass_Major": e} for i, e in enumerate(emotions)]}
            for name, emotions in annotations.items()
        }
        (labels / "labels_detailed.json").write_text(json.dumps(content))
    elif layout == "EmoDetail":
        lines = ["FileName,EmoDetail"] + [
            f'{name},"WORKER{i:07d}; {e}; Annoyed,Frustrated; A:4.0; V:2.0; D:5.0;"'
            for name, emotions in annotations.items()
            for i, e in enumerate(emotions)
        ]
        (labels / "labels_detailed.csv").write_text("\n".join(lines) + "\n")
    else:
        lines = ["FileName,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom"] + [
            f'{name},{e},"{e},Concerned",4,3,4' for name, emotions in annotations.items() for e in emotions
        ]
        (labels / "labels_detailed.csv").write_text("\n".join(lines) + "\n")
    dataset = load_msp_podcast(root, label_distribution=True)
    by_file = {row["audio"].rsplit("/", 1)[-1]: row for row in dataset}
    # 4 classes (neutral, happy, sad, angry): contempt and other are outside them
    assert by_file["MSP-PODCAST_0001_0001.wav"]["label_distribution"] == pytest.approx([0, 0, 1 / 3, 2 / 3])
    assert by_file["MSP-PODCAST_0001_0002.wav"]["label_distribution"] == pytest.approx([0.5, 0.5, 0, 0])
    # without detailed votes: the one-hot of the consensus label
    other = by_file["MSP-PODCAST_0002_0001.wav"]
    assert other["label_distribution"] == [1.0 if i == other["label"] else 0.0 for i in range(4)]
    eight = load_msp_podcast(root, num_classes=8, label_distribution=True)
    row = next(r for r in eight if r["audio"].endswith("MSP-PODCAST_0001_0001.wav"))
    assert row["label_distribution"] == pytest.approx([0, 0, 0.25, 0.5, 0, 0, 0, 0.25])  # contempt is a class now


def own_corpus(tmp_path, cells):
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = sorted((POLISH3 / "audio").iterdir())[: len(cells)]
    lines = ["file;label;speaker;label_distribution"]
    lines += [f"{path};anger;m{i % 3 + 1};{cell}" for i, (path, cell) in enumerate(zip(files, cells))]
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_own_data_distribution_column_list_mapping_and_errors(tmp_path):
    root = own_corpus(tmp_path, ["[0.5, 0.25, 0.25]", '{"fear": 1}', ""])
    dataset = load_audio_folder(root, labels=["anger", "fear", "neutral"], label_distribution=True)
    assert dataset["label_distribution"] == [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], None]
    assert "label_distribution" not in load_audio_folder(root, labels=["anger", "fear", "neutral"]).column_names
    bad = own_corpus(tmp_path / "bad", ['{"joy": 1}', "0.5 0.5"])
    with pytest.raises(CorpusError) as error:
        load_audio_folder(bad, labels=["anger", "fear", "neutral"], label_distribution=True)
    assert "row 2: label_distribution: class(es) ['joy'] are not among the classes" in str(error.value)
    assert "row 3: label_distribution: '0.5 0.5' is not a JSON list" in str(error.value)


def test_hub_dataset_distribution_column(tmp_path):
    files = sorted(str(p) for p in (POLISH3 / "audio").iterdir())[:2]
    source = Dataset.from_dict({"audio": files, "label": ["anger", "fear"], "votes": [[0.5, 0.5], [0.0, 1.0]]})
    source.save_to_disk(tmp_path / "saved")
    dataset = load_hub_dataset(str(tmp_path / "saved"), label_distribution=True, distribution_column="votes")
    assert dataset["label_distribution"] == [[0.5, 0.5], [0.0, 1.0]]
    as_text = Dataset.from_dict({"audio": files, "label": ["anger", "fear"], "votes": ['{"fear": 1}', "[1, 0]"]})
    as_text.save_to_disk(tmp_path / "text")
    dataset = load_hub_dataset(str(tmp_path / "text"), label_distribution=True, distribution_column="votes")
    assert dataset["label_distribution"] == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(CorpusError, match=r"missing column\(s\) \['label_distribution'\]"):
        load_hub_dataset(str(tmp_path / "saved"), label_distribution=True)


def test_bad_distributions_stop_train_py_before_training(tmp_path):
    root = own_corpus(tmp_path / "corpus", ["[0.5, 0.5, 0]", "[0.5, 0.6, 0]", "[1, 0]", "[0, 0, 1]", "[0, 1, 0]"])
    path = write_config(
        tmp_path / "soft.yaml",
        data={"loader": "audio_folder", "root": str(root), "loader_args": {"labels": ["anger", "fear", "neutral"]}},
        stage2={"soft_labels": True},
    )
    config = resolve_config(path)
    with pytest.raises(DatasetCheckError) as error:
        checked_dataset(config, tmp_path / "run", None, skip_bad_audio=False, write_reports=False)
    message = str(error.value)
    assert "label_distribution, row 1 (" in message and "sums to 1.1, not 1: [0.5, 0.6, 0.0]" in message
    assert "label_distribution, row 2 (" in message and "has 2 values, expected 3 (one per class)" in message
