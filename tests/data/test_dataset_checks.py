"""Checks before training: every problem is listed at once; --skip-bad-audio drops bad files with a report."""

import json
import shutil
import subprocess
import sys

import pytest
import yaml
from fake_corpora import wav_bytes
from helpers import POLISH3, REPO

from modeling.data.checks import DatasetCheckError, find_bad_audio, fold_problems, label_map_problems, label_problems
from modeling.data.folds import Fold
from modeling.training.experiment import checked_dataset
from modeling.training.run_config import resolve_config


def messy_corpus(root):
    """6 speakers × 2 classes of tiny clips, then: one missing file, one empty file, one non-audio file, one NaN
    file, one empty label, one unknown label; speaker s6 has no 'sad' clip."""
    import numpy as np
    import soundfile as sf

    clip = wav_bytes()
    rows = []
    for speaker in ("s1", "s2", "s3", "s4", "s5", "s6"):
        for label in ("angry", "sad"):
            name = f"{speaker}_{label}.wav"
            (root / name).write_bytes(clip)
            rows.append([name, label, speaker])
    rows[-1][1] = "angry"  # s6 now has two angry clips, no sad one
    (root / "s1_sad.wav").unlink()  # missing
    (root / "s2_sad.wav").write_bytes(b"")  # empty
    (root / "s3_sad.wav").write_text("not audio at all")  # corrupt
    sf.write(root / "s4_sad.wav", np.full(800, np.nan, dtype=np.float32), 16000, subtype="FLOAT")  # NaN samples
    rows[8][1] = ""  # s5_angry: empty label
    rows[9][1] = "sda"  # s5_sad: unknown label
    (root / "metadata.csv").write_text("file,label,speaker\n" + "".join(",".join(r) + "\n" for r in rows))
    return root


def messy_config(tmp_path, **data) -> dict:
    root = tmp_path / "corpus"
    root.mkdir()
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "loader": "audio_folder",
                    "root": str(messy_corpus(root)),
                    "loader_args": {"labels": ["angry", "sad"]},
                    **data,
                },
                "model": {
                    "random_init": {"hidden_size": 32, "num_hidden_layers": 6, "num_attention_heads": 2}
                },  # loadable offline
            }
        )
    )
    return resolve_config(path)


def test_every_problem_is_listed_at_once(tmp_path):
    config = messy_config(tmp_path)
    with pytest.raises(DatasetCheckError) as caught:
        checked_dataset(config, tmp_path / "run", None, skip_bad_audio=False, write_reports=False)
    problems = [problem.message for problem in caught.value.problems]
    assert str(caught.value).startswith("6 problem(s) found before training:\n  - ")
    assert "Pass --skip-bad-audio to leave out the bad audio files." in str(caught.value)
    assert problems[0].endswith("s5_angry.wav: empty label; expected one of ['angry', 'sad'].")
    expected = "s5_sad.wav: unknown label 'sda' (did you mean 'sad'?); expected one of ['angry', 'sad']."
    assert problems[1].endswith(expected)
    assert "s1_sad.wav: file does not exist" in problems[2]
    assert "s2_sad.wav: cannot decode audio" in problems[3]
    assert "s3_sad.wav: cannot decode audio" in problems[4]
    assert "s4_sad.wav: contains 800 NaN/Inf samples" in problems[5]


def test_skip_bad_audio_writes_a_report_and_keeps_checking_the_rest(tmp_path):
    config = messy_config(tmp_path)
    with pytest.raises(DatasetCheckError) as caught:
        checked_dataset(config, tmp_path / "run", None, skip_bad_audio=True, write_reports=True)
    assert not (tmp_path / "run").exists()  # nothing is written before every check passes
    # Label problems stay fatal; without the bad clips no 'sad' example is left in any training split.
    problems = [problem.message for problem in caught.value.problems]
    assert len(problems) == 2 + 6
    assert "empty label" in problems[0] and "unknown label 'sda'" in problems[1]
    assert problems[2] == (
        "fold1: class(es) ['sad'] absent from the training split (speakers ['s3', 's4', 's5', 's6']); "
        "every class needs training examples."
    )


def test_clean_corpus_passes_and_skipped_rows_are_dropped(tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(POLISH3, root, ignore=shutil.ignore_patterns("*.md"))
    (root / "audio" / "m2.a_nie_1.flac").unlink()
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"loader": "audio_folder", "root": str(root), "max_per_speaker": 9},
                "model": {"name_or_path": "unused"},
            }
        )
    )
    config = resolve_config(path)
    dataset, folds, selected = checked_dataset(
        config, tmp_path / "run", "2,4", skip_bad_audio=True, write_reports=True
    )
    assert len(dataset) == 44 and len(folds) == 5 and [f.number for f in selected] == [2, 4]
    report = json.loads((tmp_path / "run" / "skipped_audio.json").read_text())
    assert report["count"] == 1 and report["skipped"][0]["file"].endswith("m2.a_nie_1.flac")
    assert "does not exist" in report["skipped"][0]["reason"] and report["skipped"][0]["speaker"] == "m2"


def test_fold_problems_name_the_fold_and_split():
    from modeling.data.corpus import build_dataset

    rows = [
        {"audio": f"{s}{i}.wav", "label_text": label, "speaker": s, "duration_s": 1.0}
        for s in ("a", "b", "c")
        for i, label in enumerate(["x", "y"] if s != "a" else ["x", "x"])
    ]
    dataset = build_dataset(rows, ["x", "y"])
    problems = [
        problem.message
        for problem in fold_problems(dataset, [Fold(1, ("a",), ("b",), ("c",)), Fold(2, ("a", "b"), ("b",), ("d",))])
    ]
    assert problems == [
        "fold1: class(es) ['y'] absent from the training split (speakers ['a']); every class needs training examples.",
        "fold2: speaker 'b' is in both train and validation.",
    ]
    assert label_problems(dataset) == [] and find_bad_audio(dataset.select([]), progress=False) == []


def test_label_map_mismatch_between_stage1_checkpoint_and_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"0": "neutral", "1": "happy", "2": "sad"}}))
    assert label_map_problems(tmp_path, ["neutral", "happy", "sad"]) == []
    assert label_map_problems(tmp_path, ["happy", "neutral", "sad"]) == [
        f"{tmp_path / 'config.json'}: label map ['neutral', 'happy', 'sad'] differs from this run's labels "
        "['happy', 'neutral', 'sad']."
    ]


def test_cli_reports_problems_and_exits_2(tmp_path):
    config = messy_config(tmp_path)
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.run(
        [sys.executable, "train.py", "--config", str(path), "--output-dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 2
    assert "problem(s) found before training" in process.stderr and "s3_sad.wav: cannot decode audio" in process.stderr
    assert "Traceback" not in process.stderr


# ---- one class spelled two ways (letter case, surrounding whitespace, NFC vs NFD): a listed problem, never a class


def write_labelled_csv(root, labels: list[str]):
    """metadata.csv listing a<i>.wav with labels[i] (the files need not exist: only the labels are checked)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = ["file,label,speaker"] + [f"a{i}.wav,{label},s{i % 3}" for i, label in enumerate(labels)]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_a_class_spelled_in_two_letter_cases_stops_training_when_labels_are_inferred(tmp_path):
    """The reviewer's corpus: a few rows say 'Angry' and no label list is given. train.py's checks refuse it (it
    trained 3 classes ['Angry', 'angry', 'sad'] and averaged UA over the bogus one)."""
    config = messy_config(tmp_path, loader_args={})
    rows = (tmp_path / "corpus" / "metadata.csv").read_text().replace("s2_angry.wav,angry", "s2_angry.wav,Angry")
    (tmp_path / "corpus" / "metadata.csv").write_text(rows.replace("s3_angry.wav,angry", "s3_angry.wav,Angry"))
    with pytest.raises(DatasetCheckError) as caught:
        checked_dataset(config, tmp_path / "run", None, skip_bad_audio=False, write_reports=False)
    assert caught.value.problems[0].message == (
        "labels 'Angry' (2 row(s), e.g. s2_angry.wav, s3_angry.wav) and 'angry' (4 row(s), e.g. s1_angry.wav, "
        "s4_angry.wav) differ only by letter case: they would train as 2 classes. Write every row with one spelling, "
        "or list the classes in data.loader_args.labels (then rows spelled otherwise are reported)."
    )


def test_rows_matching_a_listed_class_up_to_case_are_named_with_the_class_not_as_unknown(tmp_path):
    from modeling.data.audio_folder import load_audio_folder

    root = write_labelled_csv(tmp_path / "c", ["angry", "Angry", "sad", "angry", "ANGRY ", "Sad", "sda"])
    problems = label_problems(load_audio_folder(root, labels=["angry", "sad"]))
    assert [problem.message for problem in problems] == [
        "labels 'angry' (2 row(s), e.g. a0.wav, a3.wav) and 'Angry' (1 row(s), e.g. a1.wav) and 'ANGRY' (1 row(s), "
        "e.g. a4.wav) differ only by letter case: rows spelled 'Angry' or 'ANGRY' are not the listed class 'angry'. "
        "Write them as 'angry'.",
        "labels 'sad' (1 row(s), e.g. a2.wav) and 'Sad' (1 row(s), e.g. a5.wav) differ only by letter case: rows "
        "spelled 'Sad' are not the listed class 'sad'. Write them as 'sad'.",
        f"{root / 'a6.wav'}: unknown label 'sda' (did you mean 'sad'?); expected one of ['angry', 'sad'].",
    ]


def test_label_folders_differing_by_whitespace_or_unicode_form_are_one_listed_problem_each(tmp_path):
    """`<label>/<file>` folders: 'colère' written NFC and NFD (the same on screen), 'sad' and 'sad '."""
    from modeling.data.audio_folder import load_audio_folder

    nfc, nfd = "col\u00e8re", "cole\u0300re"
    for i, folder in enumerate([nfc, nfd, nfd, "sad", "sad "]):
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"f{i}.wav").write_bytes(b"x")
    messages = [problem.message for problem in label_problems(load_audio_folder(tmp_path))]
    assert messages == [
        f"labels {nfd!r} = 'cole\\u0300re' (2 row(s), e.g. f1.wav, f2.wav) and {nfc!r} = 'col\\xe8re' (1 row(s), "
        "e.g. f0.wav) differ only by Unicode normalisation (NFC vs NFD): they would train as 2 classes. Write every "
        "row with one spelling, or list the classes in data.loader_args.labels (then rows spelled otherwise are "
        "reported).",
        "labels 'sad' (1 row(s), e.g. f3.wav) and 'sad ' (1 row(s), e.g. f4.wav) differ only by surrounding "
        "whitespace: they would train as 2 classes. Write every row with one spelling, or list the classes in "
        "data.loader_args.labels (then rows spelled otherwise are reported).",
    ]


def test_a_hub_dataset_with_two_spellings_of_a_class_is_a_listed_problem(tmp_path):
    from datasets import Dataset

    from modeling.data.hub import load_hub_dataset

    source = {"audio": ["x0.wav", "x1.wav", "x2.wav"], "label": ["angry", "Angry", "sad"], "duration_s": [1.0] * 3}
    Dataset.from_dict(source).save_to_disk(tmp_path / "hub")
    problems = label_problems(load_hub_dataset(str(tmp_path / "hub")))
    assert [problem.message for problem in problems] == [
        "labels 'Angry' (1 row(s), e.g. x1.wav) and 'angry' (1 row(s), e.g. x0.wav) differ only by letter case: they "
        "would train as 2 classes. Write every row with one spelling, or list the classes in data.loader_args.labels "
        "(then rows spelled otherwise are reported)."
    ]
