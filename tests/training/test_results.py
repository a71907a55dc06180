"""Aggregating folds: mean/std over folds, the percent table, the summed confusion matrix, the figures."""

import json

import numpy as np
import pytest

from modeling.training.results import aggregate, finished_folds, results_table, total_confusion_matrix, write_results


def fold(ua, wa, matrix, test_speaker, stage1_ua=0.5):
    return {
        "validation": {"ua": 0.5, "wa": 0.5},
        "test": {"ua": ua, "wa": wa, "confusion_matrix": matrix},
        "checkpoint": "x",
        "speakers": {"train": [], "validation": [], "test": [test_speaker]},
        "stage1": {"validation": {"ua": 0.5, "wa": 0.5}, "test": {"ua": stage1_ua, "wa": 0.25}},
    }


@pytest.fixture
def results():
    folds = {1: fold(0.6, 0.7, [[3, 1], [1, 5]], "a", 0.4), 3: fold(0.8, 0.9, [[4, 0], [1, 5]], "c", 0.6)}
    config = {
        "data": {"loader": "audio_folder", "root": "r", "folds": "leave_speakers_out"},
        "model": {"name_or_path": "m"},
        "stage2": {"pooling": "cls_attention", "eal_weight": 0.05, "fual_weight": 0.05, "eal_margin": 0.8},
    }
    return aggregate(folds, config, ["x", "y"], num_folds=3)


def test_mean_and_population_std_over_folds(results):
    assert list(results["folds"]) == ["1", "3"] and results["folds_evaluated"] == [1, 3]
    assert results["mean"] == {"ua": pytest.approx(0.7), "wa": pytest.approx(0.8)}
    assert results["std"] == {"ua": pytest.approx(0.1), "wa": pytest.approx(0.1)}  # ddof=0
    assert results["stage1"]["mean"]["ua"] == pytest.approx(0.5)
    assert total_confusion_matrix(results).tolist() == [[7, 1], [2, 10]]


def test_table_is_in_percent_with_two_decimals(results):
    table = results_table(results)
    assert "| fold1 | a | 50.00 | 50.00 | 60.00 | 70.00 | 40.00 / 25.00 |" in table
    assert "| **mean ± std** (2 of 3 folds) | | | | **70.00 ± 10.00** | **80.00 ± 10.00** | 50.00 / 25.00 |" in table


def test_table_of_an_older_run_in_percent_with_gaps_and_a_highlighted_fold():
    """The model cards' use: UA/WA stored as percents, no stage-1 scores, speakers from split.json, one fold bold."""
    results = {
        "folds": {"1": {"test": {"ua": 61.5, "wa": 70.0}}, "2": {"validation": {"ua": 50.0}, "test": {"ua": 40.0}}},
        "mean": {"ua": 50.75, "wa": 70.0},
        "std": {"ua": 10.75},
        "num_folds": 2,
    }
    table = results_table(results, scale=1.0, test_speakers={"2": ["m2", "m3"]}, highlight="1").splitlines()
    assert table[2:] == [
        "| **fold1** | – | – | – | **61.50** | **70.00** | **– / –** |",
        "| fold2 | m2, m3 | 50.00 | – | 40.00 | – | – / – |",
        "| **mean ± std** (2 folds) | | | | **50.75 ± 10.75** | **70.00 ± –** | – / – |",
    ]


def test_write_results(results, tmp_path):
    panels = [("fold1", np.random.default_rng(0).normal(size=(12, 8)), np.arange(12) % 2)]
    write_results(tmp_path, results, panels)
    assert json.loads((tmp_path / "results.json").read_text()) == results
    markdown = (tmp_path / "results.md").read_text()
    assert "2 of 3 evaluated" in markdown and "fractions in [0, 1]" in markdown
    for name in ("confusion_matrix.png", "tsne.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_finished_folds_reads_metrics_files(tmp_path):
    (tmp_path / "fold2").mkdir()
    (tmp_path / "fold2" / "metrics.json").write_text(json.dumps({"test": {"ua": 1.0}}))
    (tmp_path / "fold3").mkdir()  # started, not finished
    assert finished_folds(tmp_path, 3) == {2: {"test": {"ua": 1.0}}}


def test_macro_f1_mean_std_and_f1_table():
    folds = {1: fold(0.6, 0.7, [[3, 1], [1, 5]], "a"), 2: fold(0.8, 0.9, [[4, 0], [1, 5]], "b")}
    folds[1]["test"].update(macro_f1=0.5, per_class_f1=[0.4, 0.6])
    folds[2]["test"].update(macro_f1=0.7, per_class_f1=[0.8, 0.6])
    config = {
        "data": {"loader": "audio_folder", "root": "r", "folds": "leave_speakers_out"},
        "model": {"name_or_path": "m"},
        "stage2": {"pooling": "cls_attention", "eal_weight": 0.05, "fual_weight": 0.05, "eal_margin": 0.8},
    }
    results = aggregate(folds, config, ["x", "y"], num_folds=2)
    assert results["mean"]["macro_f1"] == pytest.approx(0.6) and results["std"]["macro_f1"] == pytest.approx(0.1)
    from modeling.training.results import f1_table, results_markdown

    table = f1_table(results).splitlines()
    assert table[0] == "| Fold | Test macro-F1 (%) | F1 x (%) | F1 y (%) |"
    assert table[2:] == [
        "| fold1 | 50.00 | 40.00 | 60.00 |",
        "| fold2 | 70.00 | 80.00 | 60.00 |",
        "| **mean ± std** | **60.00 ± 10.00** | | |",
    ]
    assert "\n".join(table) in results_markdown(results)


def test_runs_without_macro_f1_still_aggregate(results):
    assert "macro_f1" not in results["mean"]  # the fixture's folds predate macro-F1


def test_one_fold_std_is_null_and_written_n_a(tmp_path):
    """One fold: the std over folds is undefined — null in results.json, "n/a" in results.md, the printed summary
    and the model cards' table (all through `results_table` / `modeling.metrics.over_folds`), never "± 0.00"."""
    folds = {2: fold(0.6, 0.7, [[3, 1], [1, 5]], "b", 0.4)}
    folds[2]["test"].update(macro_f1=0.5, per_class_f1=[0.4, 0.6])
    config = {
        "data": {"loader": "audio_folder", "root": "r", "folds": "leave_speakers_out"},
        "model": {"name_or_path": "m"},
        "stage2": {"pooling": "cls_attention", "eal_weight": 0.05, "fual_weight": 0.05, "eal_margin": 0.8},
    }
    results = aggregate(folds, config, ["x", "y"], num_folds=3)
    assert results["mean"] == {"ua": 0.6, "wa": 0.7, "macro_f1": 0.5}
    assert results["std"] == {"ua": None, "wa": None, "macro_f1": None}
    assert results["stage1"]["std"] == {"ua": None, "wa": None}
    write_results(tmp_path, results, [])
    assert json.loads((tmp_path / "results.json").read_text())["std"] == {"ua": None, "wa": None, "macro_f1": None}
    markdown = (tmp_path / "results.md").read_text()
    assert "| **mean ± std** (1 of 3 folds) | | | | **60.00 ± n/a** | **70.00 ± n/a** | 40.00 / 25.00 |" in markdown
    assert "| **mean ± std** | **50.00 ± n/a** | | |" in markdown and "± 0.00" not in markdown
    from modeling.cli.train import summary_line

    assert summary_line(results, "runs/one") == (
        "Mean over 1 fold(s): UA 60.00 ± n/a %, WA 70.00 ± n/a %, macro-F1 50.00 ± n/a % "
        "(results in runs/one/results.md)"
    )


def test_a_model_card_of_a_one_fold_run(tmp_path):
    """Model cards of a run whose results.json has null stds: the table says n/a, the model-index keeps its values."""
    from runs import FOLDS, write_run

    from modeling.publishing.model_card import card_data, render_fold_card
    from modeling.publishing.run import load_run

    run_dir = write_run(tmp_path / "run", folds={"1": FOLDS["1"]})
    results = json.loads((run_dir / "results.json").read_text())
    results["std"] = {"ua": None, "wa": None}
    (run_dir / "results.json").write_text(json.dumps(results))
    run = load_run(run_dir)
    card = render_fold_card(run, run.folds["1"], "org/ser-fold1")
    mean = results["mean"]
    assert f"**{100 * mean['ua']:.2f} ± n/a** | **{100 * mean['wa']:.2f} ± n/a**" in card and "± 0.00" not in card
    values = {(r.metric_type, r.metric_value) for r in card_data(run, [run.folds["1"]], "ser").eval_results}
    assert ("accuracy", round(100 * results["folds"]["1"]["test"]["wa"], 2)) in values
