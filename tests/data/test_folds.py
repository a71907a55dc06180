"""Fold assignment: IEMOCAP leave-one-session-out, leave-speakers-out, gender pairs; speaker independence."""

from collections import Counter

import pytest
from helpers import POLISH3, POLISH3_LABELS

from modeling.data.audio_folder import load_audio_folder
from modeling.data.corpus import build_dataset
from modeling.data.folds import (
    Fold,
    FoldError,
    make_folds,
    parse_fold_numbers,
    speaker_overlap_problems,
    split_fold,
    split_summary,
)


def corpus(speakers: dict[str, str], per_speaker: int = 2, session_of=None):
    """A dataset (audio paths need not exist) with `per_speaker` rows per speaker, classes a/b alternating."""
    rows = [
        {
            "audio": f"/x/{speaker}_{i}.wav",
            "label_text": "ab"[i % 2],
            "speaker": speaker,
            "gender": gender,
            "session": session_of(speaker) if session_of else -1,
            "duration_s": 1.0,
        }
        for speaker, gender in speakers.items()
        for i in range(per_speaker)
    ]
    return build_dataset(rows, ["a", "b"])


def assert_speaker_independent(dataset, folds):
    for fold in folds:
        splits = split_fold(dataset, fold)
        assert speaker_overlap_problems(fold, splits) == []
        seen = [set(splits[name]["speaker"]) for name in ("train", "validation", "test")]
        assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
        assert sum(len(splits[name]) for name in splits) == len(dataset)


def test_iemocap_leave_one_session_out():
    speakers = {f"Ses0{s}{g}": "female" if g == "F" else "male" for s in range(1, 6) for g in "FM"}
    dataset = corpus(speakers, session_of=lambda speaker: int(speaker[3:5]))
    folds = make_folds(dataset, "leave_one_session_out")
    assert [(f.number, f.validation, f.test) for f in folds] == [
        (k, (f"Ses0{k}M",), (f"Ses0{k}F",)) for k in range(1, 6)
    ]
    assert folds[2].train == ("Ses01F", "Ses01M", "Ses02F", "Ses02M", "Ses04F", "Ses04M", "Ses05F", "Ses05M")
    assert_speaker_independent(dataset, folds)
    summary = split_summary(folds[2], split_fold(dataset, folds[2]))
    assert summary["test"] == {
        "speakers": ["Ses03F"],
        "sessions": [3],
        "num_examples": 2,
        "class_counts": {"a": 1, "b": 1},
    }
    assert summary["train"]["sessions"] == [1, 2, 4, 5]


def test_leave_one_session_out_needs_one_male_and_one_female_per_session():
    dataset = corpus(
        {"Ses01F": "female", "Ses02F": "female", "Ses02M": "male", "Ses03F": "female", "Ses03M": "male"},
        session_of=lambda speaker: int(speaker[3:5]),
    )
    with pytest.raises(FoldError, match=r"session 1: expected one male .* got male \[\], female \['Ses01F'\]"):
        make_folds(dataset, "leave_one_session_out")


def test_polish3_leave_one_speaker_out():
    dataset = load_audio_folder(POLISH3, labels=POLISH3_LABELS)
    folds = make_folds(dataset, "leave_speakers_out")
    assert [(f.test, f.validation) for f in folds] == [
        (("m1",), ("m2",)),
        (("m2",), ("m3",)),
        (("m3",), ("m4",)),
        (("m4",), ("m5",)),
        (("m5",), ("m1",)),
    ]
    assert folds[0].train == ("m3", "m4", "m5")
    assert Counter(s for f in folds for s in f.test) == {f"m{i}": 1 for i in range(1, 6)}  # everyone tested once
    assert_speaker_independent(dataset, folds)
    splits = split_fold(dataset, folds[0])
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 270, "validation": 90, "test": 90}
    assert Counter(splits["test"]["label_text"]) == {"anger": 30, "fear": 30, "neutral": 30}


def test_speaker_groups_are_gender_balanced():
    speakers = {f"f{i}": "female" for i in range(6)} | {f"m{i}": "male" for i in range(6)}
    dataset = corpus(speakers)
    folds = make_folds(dataset, "leave_speakers_out", num_folds=3)
    assert len(folds) == 3
    for fold in folds:
        genders = Counter(speakers[s] for s in fold.test)
        assert genders == {"female": 2, "male": 2}
    assert sorted(s for f in folds for s in f.test) == sorted(speakers)
    assert_speaker_independent(dataset, folds)
    with pytest.raises(FoldError, match="num_folds must be between 3 and the number of speakers"):
        make_folds(dataset, "leave_speakers_out", num_folds=2)


def test_gender_pairs_mirror_iemocap():
    speakers = {"EB0": "female", "IC0": "female", "KD0": "female", "KS0": "male", "MP0": "male", "SM0": "male"}
    dataset = corpus(speakers)
    folds = make_folds(dataset, "gender_pairs")
    assert [(f.validation, f.test) for f in folds] == [
        (("KS0",), ("EB0",)),
        (("MP0",), ("IC0",)),
        (("SM0",), ("KD0",)),
    ]
    assert folds[0].train == ("IC0", "KD0", "MP0", "SM0")
    assert_speaker_independent(dataset, folds)


def test_missing_speakers_and_bad_strategy_are_clear_errors():
    dataset = corpus({"": "male", "s1": "male", "s2": "male"})
    with pytest.raises(FoldError, match="some rows have no speaker"):
        make_folds(dataset, "leave_speakers_out")
    with pytest.raises(FoldError, match="data.folds must be one of"):
        make_folds(dataset, "random")


def test_speaker_with_two_genders_is_an_error():
    rows = corpus({"s1": "male", "s2": "male", "s3": "female"}).to_list()
    rows[0]["gender"] = "female"
    dataset = build_dataset(rows, ["a", "b"])
    with pytest.raises(FoldError, match=r"speaker\(s\) \['s1'\] appear with more than one gender"):
        make_folds(dataset, "gender_pairs")


def test_overlapping_fold_is_refused():
    fold = Fold(2, train=("a", "b"), validation=("b",), test=("c", "a"))
    assert speaker_overlap_problems(fold) == [
        "fold2: speaker 'b' is in both train and validation.",
        "fold2: speaker 'a' is in both train and test.",
    ]
    with pytest.raises(FoldError, match="speaker 'b' is in both train and validation"):
        split_fold(corpus({"a": "male", "b": "male", "c": "male"}), fold)


@pytest.mark.parametrize(
    "text, expected",
    [
        (None, [1, 2, 3, 4, 5]),
        ("all", [1, 2, 3, 4, 5]),
        ("1,3", [1, 3]),
        ("3, 1,3", [1, 3]),
        ("5", [5]),
        # fold names as run directories and push_to_hub.py --folds spell them (rundir.reader.fold_number)
        ("fold1", [1]),
        ("fold3, 1,fold3", [1, 3]),
    ],
)
def test_parse_fold_numbers(text, expected):
    assert parse_fold_numbers(text, 5) == expected


@pytest.mark.parametrize("text", ["0", "6", "1,x", ",", "fold0", "fold6", "foldx", "f1"])
def test_parse_fold_numbers_rejects(text):
    with pytest.raises(FoldError, match="--folds"):
        parse_fold_numbers(text, 5)
