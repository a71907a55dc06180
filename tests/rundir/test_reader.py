"""The one reader of finished runs (`modeling.rundir.reader`, issue 19): fold names in every spelling, each fold's
best models, classes, splits, predictions files; and no other module parsing the run's layout on its own."""

import json
import re
import shutil

import pytest
from helpers import POLISH3_LABELS, REPO
from runs import write_run

from modeling.rundir.reader import FinishedRun, RunReadError, fold_name, fold_number, run_location


@pytest.mark.parametrize("spelling", [2, "2", "fold2", " fold2 "])
def test_every_spelling_of_a_fold_is_one_fold(spelling):
    assert fold_number(spelling) == 2 and fold_name(spelling) == "fold2"


@pytest.mark.parametrize("bad", ["0", "fold", "f2", "fold-1", "2a", ""])
def test_what_is_not_a_fold_is_named(bad):
    with pytest.raises(RunReadError, match="is not a fold"):
        fold_number(bad)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("run") / "run")


def test_a_finished_run_is_read_through_one_module(run, tmp_path):
    finished = FinishedRun(run)
    assert finished.finished_folds() == [1, 2]
    assert list(finished.results()["folds"]) == ["1", "2"] and finished.labels() == POLISH3_LABELS
    assert finished.best(1) == run / "fold1" / "stage2" / "best" and finished.best("fold2", "stage1").name == "best"
    assert finished.best_models() == {1: run / "fold1" / "stage2" / "best", 2: run / "fold2" / "stage2" / "best"}
    assert list(finished.all_best_models()) == ["fold1/stage2", "fold2/stage2"]  # write_run saves no stage 1
    assert finished.split("fold1")["test"]["speakers"] == ["m1"] and finished.split(3) is None
    assert finished.config()["seed"] == 42
    with pytest.raises(RunReadError, match=r"fold1/predictions_test.csv: missing"):
        finished.predictions(1)

    # results.json spelled with fold names (any spelling on disk is one fold)
    copy = shutil.copytree(run, tmp_path / "copy")
    results = json.loads((copy / "results.json").read_text())
    results["folds"] = {f"fold{k}": v for k, v in results["folds"].items()}
    (copy / "results.json").write_text(json.dumps(results))
    assert list(FinishedRun(copy).results()["folds"]) == ["1", "2"]


@pytest.mark.bad_input
def test_folds_whose_models_disagree_on_the_classes_are_refused(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "copy")
    config = copy / "fold2" / "stage2" / "best" / "config.json"
    data = json.loads(config.read_text())
    data["id2label"] = {"0": "anger", "1": "neutral", "2": "fear"}
    config.write_text(json.dumps(data))
    with pytest.raises(RunReadError, match=r"different classes: .*'fold1': \['anger', 'fear', 'neutral'\]"):
        FinishedRun(copy).labels()
    (copy / "results.json").unlink()
    with pytest.raises(RunReadError, match="results.json not found: the run in .* has not finished"):
        FinishedRun(copy).results()


def test_a_stage_output_directory_names_its_fold_and_stage(tmp_path):
    assert run_location(tmp_path / "fold3" / "stage2") == "fold3, stage2"
    assert run_location(tmp_path / "folder" / "stage2") is None and run_location(tmp_path / "fold1" / "x") is None


def test_no_module_outside_the_run_directory_room_parses_its_layout():
    """Fold folders globbed, fold names cut apart or spelled by hand elsewhere were five owners of one layout."""
    patterns = [
        r"glob\([\"']fold",
        r"startswith\([\"']fold",
        r"removeprefix\([\"']fold",
        r"\.name\[4:\]",
        r"f[\"']fold\{",
        r"stage\*/best",
    ]
    found = []
    for path in sorted(REPO.glob("modeling/**/*.py")):
        if path.parent.name == "rundir":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if any(re.search(pattern, line) for pattern in patterns):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.bad_input
def test_a_path_that_is_not_a_run_is_named_for_what_it_is(run, tmp_path, capsys):
    """`compare_runs.py runs/t1 runs/t2` with no runs/t2 said "runs/t2/results.json not found: the run in runs/t2
    has not finished ... Rerun the same train.py command". The reader (every reader of runs) tells a missing
    directory (with the closest names), a folder that is not a run, and a started run apart."""
    from modeling.cli.compare_runs import main as compare_main

    (tmp_path / "runs" / "t1").mkdir(parents=True)
    (tmp_path / "runs" / "notes").mkdir()
    (tmp_path / "runs" / "notes" / "todo.txt").write_text("x")
    missing = tmp_path / "runs" / "t1x"
    with pytest.raises(RunReadError) as error:
        FinishedRun(missing).results()
    assert str(error.value) == f"Run directory {missing} does not exist. Did you mean {tmp_path / 'runs' / 't1'}?"
    with pytest.raises(RunReadError, match=r"notes is not a train.py run: it holds no config.yaml and no fold<k>"):
        FinishedRun(tmp_path / "runs" / "notes").results()
    started = shutil.copytree(run, tmp_path / "runs" / "started")
    (started / "results.json").unlink()
    with pytest.raises(RunReadError, match="results.json not found: the run in .* has not finished"):
        FinishedRun(started).results()
    out = tmp_path / "cmp.md"
    assert compare_main([str(tmp_path / "runs" / "t2"), str(run), "--output", str(out)]) == 2
    assert f"error: Run directory {tmp_path / 'runs' / 't2'} does not exist." in capsys.readouterr().err
    assert not out.exists()
