"""Issue 20: score.py checks everything first with train.py's `CheckError` machinery (every problem listed, grouped,
nothing written); an unfinished run (a fold's lock present, a fold without best/) is refused naming the folds, where
it was scored silently; scores on the run's own training corpus (or a copy of it) are labelled not held-out."""

import json

import yaml
from helpers import POLISH3_LABELS, REPO
from runs import write_run

from modeling.cli.score import main
from modeling.evaluation.cross_corpus import not_held_out


def corpus_config(path, root: str, **data) -> str:
    data = {"loader": "audio_folder", "root": root, "loader_args": {"labels": POLISH3_LABELS}, **data}
    path.write_text(yaml.safe_dump({"data": data}))
    return str(path)


def test_an_unfinished_run_and_every_other_problem_are_listed_before_anything_is_written(tmp_path, capsys):
    run = write_run(tmp_path / "run")  # folds 1 and 2 finished
    (run / "fold3" / "stage1").mkdir(parents=True)
    (run / "fold3" / "train.lock").write_text('{"pid": 1, "host": "elsewhere"}')
    (run / "fold4" / "stage1").mkdir(parents=True)
    config = corpus_config(tmp_path / "c.yaml", str(REPO / "data" / "polish3"))
    out = tmp_path / "scored"
    argv = ["--run-dir", str(run), "--config", config, "--output-dir", str(out)]
    assert main([*argv, "--perturb", "noise:snr_db=ten", "--label-map", "angry"]) == 2
    message = capsys.readouterr().err
    assert "3 problem(s) in score.py's arguments (nothing written):" in message  # 3 causes
    assert "unfinished folds (2 times), e.g.:" in message
    assert f"--run-dir {run}: fold3 is unfinished: its lock file is present (a train.py process" in message
    assert f"--run-dir {run}: fold4 is unfinished: it has no stage2/best model yet." in message
    assert "snr_db must be a number, got 'ten'" in message and "--label-map expects SOURCE=TARGET" in message
    assert not out.exists()
    assert main(["--run-dir", str(tmp_path / "nope"), "--config", str(tmp_path / "x.yaml"), "--output-dir", "o"]) == 2
    message = capsys.readouterr().err
    assert f"--run-dir {tmp_path / 'nope'}: Run directory {tmp_path / 'nope'} does not exist." in message
    assert f"--config {tmp_path / 'x.yaml'}: no such file; expected a YAML corpus config." in message


def test_scores_on_the_runs_own_corpus_are_labelled_not_held_out(tmp_path, monkeypatch, capsys):
    """The run records its corpus (results.json's config: audio_folder at data/polish3); scoring it there measures
    utterances its fold models trained on. However the root is spelled, the numbers are labelled."""
    run = write_run(tmp_path / "run")
    monkeypatch.chdir(REPO)
    same = {"data": {"loader": "audio_folder", "root": "./data/polish3/"}}
    assert not_held_out(run, same).startswith("not held-out: audio_folder at ./data/polish3/ is the corpus the run")
    assert not_held_out(run, {"data": {"loader": "audio_folder", "root": str(tmp_path)}}) == ""
    config = corpus_config(tmp_path / "own.yaml", "./data/polish3", speakers=["m1"], max_per_speaker=3)
    out = tmp_path / "scored"
    assert main(["--run-dir", str(run), "--config", config, "--output-dir", str(out)]) == 0
    assert "warning: not held-out: audio_folder at ./data/polish3 is the corpus" in capsys.readouterr().err
    assert "**Warning**: not held-out" in (out / "scores.md").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "metadata.csv").write_text((REPO / "data" / "polish3" / "metadata.csv").read_text())
    (other / "audio").symlink_to(REPO / "data" / "polish3" / "audio")
    config = corpus_config(tmp_path / "other.yaml", str(other), speakers=["m1"], max_per_speaker=3)
    assert main(["--run-dir", str(run), "--config", config, "--output-dir", str(tmp_path / "o2")]) == 0
    assert "not held-out" not in capsys.readouterr().err  # another root, and the run records none of its files


def test_a_copy_of_the_runs_corpus_elsewhere_is_labelled_not_held_out(tmp_path, capsys):
    """A copy of the training corpus at another path (or read by another loader) was scored as a held-out corpus,
    exit 0, no warning: the root alone decided. The run's predictions CSVs name the files its folds were scored
    on, and split.json every split's: a corpus whose files are mostly those is the run's own, wherever it lies."""
    run = write_run(tmp_path / "run")  # fold 1: test speaker m1; fold 2: m2
    metadata = (REPO / "data" / "polish3" / "metadata.csv").read_text().splitlines()
    m1 = [line.split(",")[0] for line in metadata if ",m1," in line]
    header = "file,speaker,label,predicted," + ",".join(f"prob_{c}" for c in POLISH3_LABELS)
    rows = [f"{file},m1,anger,anger,1,0,0" for file in m1]
    (run / "fold1" / "predictions_test.csv").write_text("\n".join([header, *rows]) + "\n")
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "metadata.csv").write_text((REPO / "data" / "polish3" / "metadata.csv").read_text())
    (copy / "audio").symlink_to(REPO / "data" / "polish3" / "audio")
    config = corpus_config(tmp_path / "copy.yaml", str(copy), speakers=["m1"], max_per_speaker=3)
    out = tmp_path / "scored"
    assert main(["--run-dir", str(run), "--config", config, "--output-dir", str(out)]) == 0
    assert f"warning: not held-out: audio_folder at {copy} is the corpus the run was trained on (or a copy" in (
        capsys.readouterr().err
    )
    scores = json.loads((out / "scores.json").read_text())
    assert scores["speaker_dependent"] == {"fold2": ["m1"]}  # fold 2 trained on m1; fold 1 tested on it
    # fold<k>/split.json lists every split's files: a copy holding only training utterances is the run's too
    m3 = [line.split(",")[0] for line in metadata if ",m3," in line]
    split = json.loads((run / "fold1" / "split.json").read_text())
    split["train"]["files"] = m3
    (run / "fold1" / "split.json").write_text(json.dumps(split))
    config = corpus_config(tmp_path / "copy_m3.yaml", str(copy), speakers=["m3"], max_per_speaker=3)
    assert main(["--run-dir", str(run), "--config", config, "--output-dir", str(tmp_path / "m3")]) == 0
    assert "warning: not held-out: audio_folder at" in capsys.readouterr().err
    scores = json.loads((tmp_path / "m3" / "scores.json").read_text())
    assert scores["speaker_dependent"] == {"fold1": ["m3"], "fold2": ["m3"]}  # trained on m3; validated on m3
    elsewhere = {"data": {"loader": "audio_folder", "root": str(copy)}}
    assert not_held_out(run, elsewhere, m1[:2] + ["audio/x.flac", "audio/y.flac"]) != ""  # half: the run's
    assert not_held_out(run, elsewhere, m1[:1] + ["audio/x.flac", "audio/y.flac"]) == ""  # a third: not decided
