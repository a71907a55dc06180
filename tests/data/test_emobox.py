"""EmoBox's data layout (modeling/data/emobox.py): a fixture with two corpora in EmoBox's files (label_map.json,
data.seg.wrd.stm, fold_<k>/<corpus>_{train,valid,test}_fold_<k>.jsonl), real polish3 clips as the user's copies;
one corpus has speaker-independent folds (one without a validation split), the other shares speakers."""

import csv
import json
import shutil

import numpy as np
import pytest
from helpers import POLISH3

from modeling.data import load_corpus
from modeling.data.emobox import EmoBoxError, emobox_predictions, load_emobox, read_emobox, speaker_dependent_folds
from modeling.data.folds import make_folds, split_fold
from modeling.evaluation.breakdowns import shared_speakers, speaker_dependent_note
from modeling.metrics.predictions import Predictions


CODES = {"anger": "a", "fear": "f", "neutral": "n"}


def polish3_rows(speakers, per_speaker=3):
    with open(POLISH3 / "metadata.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["speaker"] in speakers]
    out = []
    for speaker in speakers:  # classes interleaved: anger, fear, neutral, anger, ...
        by_class = [[r for r in rows if r["speaker"] == speaker and r["label"] == c] for c in CODES]
        out += [by_class[i % 3][i // 3] for i in range(per_speaker)]
    return out


def write_corpus(base, copies, corpus, folds):
    """folds: {k: {"train"/"valid"/"test": [polish3 rows]}} → EmoBox metadata under base/data/<corpus>, audio under
    copies/<corpus> (EmoBox's `downloads/<corpus>`)."""
    folder = base / "data" / corpus
    folder.mkdir(parents=True)
    (folder / "label_map.json").write_text(json.dumps({v: k for k, v in CODES.items()}))
    stm = {}
    for k, splits in folds.items():
        (folder / f"fold_{k}").mkdir()
        for split, rows in splits.items():
            lines = []
            for row in rows:
                name = row["file"].rsplit("/", 1)[-1].replace(".flac", "")
                key = f"{corpus}-{name}"
                wav = f"downloads/{corpus}/{row['speaker']}/{name}.flac"
                target = copies / corpus / row["speaker"] / f"{name}.flac"
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copy(POLISH3 / row["file"], target)
                record = {"key": key, "dataset": corpus, "wav": wav, "type": "raw", "sample_rate": 16000}
                lines.append(json.dumps({**record, "length": float(row["duration_s"]), "emo": CODES[row["label"]]}))
                stm[key] = f"{key} 1 {row['speaker']} 0 1.0 <id={key},lang=pl,spk={row['speaker']},emotion=x> x"
            (folder / f"fold_{k}" / f"{corpus}_{split}_fold_{k}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "data.seg.wrd.stm").write_text("\n".join(stm.values()) + "\n")
    return folder


@pytest.fixture(scope="module")
def emobox(tmp_path_factory):
    base = tmp_path_factory.mktemp("emobox")
    copies = base / "copies"
    by = {s: polish3_rows([s]) for s in ("m1", "m2", "m3", "m4")}
    write_corpus(
        base,
        copies,
        "alpha",
        {
            1: {"train": by["m1"] + by["m2"], "valid": by["m3"], "test": by["m4"]},
            2: {"train": by["m2"] + by["m3"] + by["m4"], "test": by["m1"]},  # no official validation split
        },
    )
    six = {s: polish3_rows([s], 6) for s in ("m1", "m2")}  # each class twice per speaker
    beta = {1: {"train": six["m1"][:3] + six["m2"][:3], "test": six["m1"][3:] + six["m2"][3:]}}
    write_corpus(base, copies, "beta", beta)
    return base, copies


def test_two_corpora_load_with_their_official_folds(emobox):
    base, copies = emobox
    alpha = load_corpus("emobox", copies / "alpha", corpus="alpha", metadata_dir=base / "data")
    assert len(alpha) == 12 and set(alpha["speaker"]) == {"m1", "m2", "m3", "m4"}
    assert alpha.features["label"].names == ["anger", "fear", "neutral"]  # label_map.json's order of names
    folds = make_folds(alpha, "predefined")
    assert [f.number for f in folds] == [1, 2]
    one, two = (split_fold(alpha, f) for f in folds)
    assert (sorted(set(one["train"]["speaker"])), set(one["validation"]["speaker"]), set(one["test"]["speaker"])) == (
        ["m1", "m2"],
        {"m3"},
        {"m4"},
    )
    # Fold 2 has no valid file: training speaker sorted(m2, m3, m4)[(2 - 1) % 3] = m3 validates.
    assert set(two["validation"]["speaker"]) == {"m3"} and sorted(set(two["train"]["speaker"])) == ["m2", "m4"]
    assert set(two["test"]["speaker"]) == {"m1"} and len(two["train"]) + len(two["validation"]) == 9
    assert all(path.startswith(str(copies / "alpha")) for path in alpha["audio"])
    assert speaker_dependent_folds(read_emobox(base / "data", "alpha")) == {}


def test_shared_speakers_are_flagged_and_labelled_speaker_dependent(emobox, caplog):
    base, copies = emobox
    beta = load_emobox(copies / "beta", "beta", base / "data" / "beta")  # the corpus folder itself works too
    assert "folds [1] share speakers between train and test (speaker-dependent)" in caplog.text
    assert speaker_dependent_folds(read_emobox(base / "data", "beta")) == {1: ["m1", "m2"]}
    (fold,) = make_folds(beta, "predefined")
    metrics = {"1": {"speakers": {s: list(fold.speakers(s)) for s in ("train", "validation", "test")}}}
    assert shared_speakers(metrics) == {"1": ["m1", "m2"]}  # what results.json's speaker_dependent records
    assert speaker_dependent_note(shared_speakers(metrics)).startswith("**Speaker-dependent results**: the test")


@pytest.mark.bad_input
def test_a_fold_file_naming_a_missing_recording_is_named(emobox, tmp_path):
    base, copies = emobox
    shutil.copytree(base / "data" / "alpha", tmp_path / "alpha")
    test_file = tmp_path / "alpha" / "fold_1" / "alpha_test_fold_1.jsonl"
    lines = test_file.read_text().splitlines()
    lines.append(json.dumps({**json.loads(lines[0]), "key": "alpha-gone", "wav": "downloads/alpha/m4/gone.flac"}))
    test_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(EmoBoxError) as error:
        load_emobox(copies / "alpha", "alpha", tmp_path)
    message = str(error.value)
    assert f"{test_file}: alpha-gone → {copies / 'alpha' / 'm4' / 'gone.flac'} not found" in message
    assert "1 recording(s) the fold files name are missing" in message
    lines[1] = lines[1].replace('"emo": "', '"emo": "x')
    test_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(EmoBoxError, match=r"alpha_test_fold_1.jsonl:2: emo 'x.' is not in label_map.json"):
        read_emobox(tmp_path, "alpha")


def test_mis_decoded_emobox_paths_find_the_real_file(tmp_path):
    """CaFE's fold files write `D‚go–t` for the folder `Dégoût` (cp437 archive names read as cp1252)."""
    from modeling.data.emobox import audio_path

    real = tmp_path / "CaFE_48k" / "Dégoût" / "Fort" / "08-D-2-5.wav"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"")
    assert audio_path(tmp_path, "cafe", "downloads/cafe/CaFE_48k/D\u201ago\u2013t/Fort/08-D-2-5.wav") == real
    assert audio_path(tmp_path, "cafe", "downloads/cafe/x.wav") == tmp_path / "x.wav"  # missing: as written


def test_predictions_in_emobox_evaluation_form():
    predictions = Predictions(
        ["m1/a.flac", "m1/b.flac"],
        ["m1", "m1"],
        np.array([0, 2]),
        np.array([[0.1, 0.2, 0.7], [0.1, 0.1, 0.8]]),
        ["anger", "fear", "neutral"],
    )
    rows = emobox_predictions(predictions, {"m1/a.flac": "alpha-a", "m1/b.flac": "alpha-b"})
    assert rows == [
        {"key": "alpha-a", "prediction": "neutral", "label": "anger"},
        {"key": "alpha-b", "prediction": "neutral", "label": "neutral"},
    ]
    with pytest.raises(EmoBoxError, match="not in the EmoBox folds"):
        emobox_predictions(predictions, {})


@pytest.mark.slow
def test_train_score_and_export_with_the_official_folds_from_one_config(emobox, tmp_path):
    """One config trains beta's official fold (shared speakers): results.json/results.md, score.py's scores.json and
    the model card say speaker-dependent; the export has one prediction per test key."""
    from runs import write_config

    from modeling.evaluation.cross_corpus import score_run
    from modeling.evaluation.emobox_export import export_run
    from modeling.publishing.model_card import fold_results_table
    from modeling.publishing.run import load_run
    from modeling.training.experiment import run_experiment
    from modeling.training.run_config import resolve_config

    base, copies = emobox
    data = {
        "loader": "emobox",
        "root": str(copies / "beta"),
        "loader_args": {"corpus": "beta", "metadata_dir": str(base / "data")},
        "folds": "predefined",
        "speakers": None,
        "max_per_speaker": None,
    }
    tiny = {"epochs": 1, "batch_size": 2}
    config = write_config(tmp_path / "beta.yaml", data=data, stage1=tiny, stage2=tiny)
    results = run_experiment(resolve_config(config), tmp_path / "run")
    assert results["speaker_dependent"] == {"1": ["m1", "m2"]}
    assert "**Speaker-dependent results**" in (tmp_path / "run" / "results.md").read_text()
    assert "**Speaker-dependent results**" in fold_results_table(load_run(tmp_path / "run"))
    scores = score_run(tmp_path / "run", config, tmp_path / "scored", progress=False)
    assert scores["speaker_dependent"] == {"fold1": ["m1", "m2"]}
    assert "**Speaker-dependent results**" in (tmp_path / "scored" / "scores.md").read_text()
    summary = export_run(tmp_path / "run", tmp_path / "export")
    assert summary == {"corpus": "beta", "folds": ["fold1"], "speaker_dependent_folds": ["fold1"]}
    lines = (tmp_path / "export" / "fold1_predictions.jsonl").read_text().splitlines()
    expected = {json.loads(line)["key"] for line in (base / "data/beta/fold_1/beta_test_fold_1.jsonl").open()}
    assert {json.loads(line)["key"] for line in lines} == expected and len(lines) == 6
