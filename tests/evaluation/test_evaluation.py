"""score.py and compare_runs.py on finished runs: a 2-fold tiny run of the demo corpus (real speech, real Trainer),
and a second run that differs in stage 2 only. Numbers are recomputed from the written predictions."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import POLISH3, REPO
from runs import write_config  # noqa: E402

from modeling.audio import load_audio
from modeling.metrics import compute_ser_metrics
from modeling.metrics.predictions import read_predictions
from modeling.prediction_fields import softmax
from modeling.training.experiment import run_experiment
from modeling.training.run_config import resolve_config


pytestmark = pytest.mark.slow
TINY = dict(
    data={"speakers": ["m1", "m2", "m3"], "max_per_speaker": 9},
    stage1={"epochs": 1, "batch_size": 3},
    stage2={"epochs": 1, "batch_size": 3},
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs, folds 1 and 2: A (stage 2 with EAL + FUAL) and B (λ = 0, stage 1 reused from A)."""
    tmp = tmp_path_factory.mktemp("runs")
    run_a, run_b = tmp / "a", tmp / "b"
    run_experiment(resolve_config(write_config(tmp / "a.yaml", **TINY)), run_a, folds="1,2")
    stage2_b = {**TINY["stage2"], "eal_weight": 0.0, "fual_weight": 0.0}
    config_b = write_config(
        tmp / "b.yaml", **{**TINY, "stage1": {**TINY["stage1"], "from_run": str(run_a)}, "stage2": stage2_b}
    )
    run_experiment(resolve_config(config_b), run_b, folds="1,2")
    return run_a, run_b


def test_fold_predictions_csv_match_metrics(runs):
    run_a, _ = runs
    for k in (1, 2):
        metrics = json.loads((run_a / f"fold{k}" / "metrics.json").read_text())
        for split in ("validation", "test"):
            predictions = read_predictions(run_a / f"fold{k}" / f"predictions_{split}.csv")
            assert predictions.classes == ["anger", "fear", "neutral"] and len(predictions.files) == 9
            assert set(predictions.speakers) == set(metrics["speakers"][split])
            assert all(f.startswith("audio/") and (POLISH3 / f).is_file() for f in predictions.files)
            assert np.allclose(predictions.probabilities.sum(axis=1), 1, atol=1e-5)
            recomputed = compute_ser_metrics(predictions.predicted, predictions.labels, 3)
            for key in ("ua", "wa", "macro_f1"):
                assert metrics[split][key] == pytest.approx(recomputed[key]), (k, split, key)
        assert metrics["test"]["per_class_f1"] == pytest.approx(recomputed["per_class_f1"])
        assert metrics["test"]["confusion_matrix"] == recomputed["confusion_matrix"]
    results = json.loads((run_a / "results.json").read_text())
    f1s = [results["folds"][k]["test"]["macro_f1"] for k in ("1", "2")]
    assert results["mean"]["macro_f1"] == pytest.approx(np.mean(f1s))
    # Per-speaker breakdowns: recomputed from each speaker's rows of the test CSVs; genders from polish3 (all male).
    pooled = [read_predictions(run_a / f"fold{k}" / "predictions_test.csv") for k in (1, 2)]
    breakdown = results["breakdowns"]
    assert sorted(breakdown["speaker"]) == sorted({s for p in pooled for s in p.speakers})
    for p in pooled:
        for speaker in set(p.speakers):
            rows = np.array(p.speakers) == speaker
            expected = compute_ser_metrics(p.predicted[rows], p.labels[rows], 3)
            assert breakdown["speaker"][speaker]["ua"] == pytest.approx(expected["ua"]), speaker
            assert breakdown["speaker"][speaker]["n"] == int(rows.sum())
    assert list(breakdown["gender"]) == ["male"] and breakdown["gender"]["male"]["n"] == 18
    worst = min(breakdown["speaker"].values(), key=lambda s: s["ua"])["ua"]
    assert breakdown["worst_speaker"]["ua"] == worst
    assert "Worst speaker: " in (run_a / "results.md").read_text()
    assert json.loads((run_a / "fold1" / "metrics.json").read_text())["breakdowns"]["gender"]["male"]["n"] == 9
    # Calibration: T fitted on validation, stored in best/config.json (checksums still valid), applied to the CSVs.
    from modeling.rundir.integrity import checkpoint_problems

    for k in (1, 2):
        calibration = json.loads((run_a / f"fold{k}" / "metrics.json").read_text())["calibration"]
        best = run_a / f"fold{k}" / "stage2" / "best"
        assert json.loads((best / "config.json").read_text())["calibration_temperature"] == calibration["temperature"]
        assert checkpoint_problems(best) == [] and calibration["validation"]["n"] == 9
        assert calibration["validation"]["nll_after"] <= calibration["validation"]["nll_before"] + 1e-9
        arrays = np.load(run_a / f"fold{k}" / "test_predictions.npz")
        csv_probabilities = read_predictions(run_a / f"fold{k}" / "predictions_test.csv").probabilities
        assert float(arrays["temperature"]) == calibration["temperature"]
        assert np.allclose(csv_probabilities, softmax(arrays["logits"], calibration["temperature"]), atol=1e-6)
    markdown = (run_a / "results.md").read_text()
    assert "Calibration: temperature T fitted per fold" in markdown and (run_a / "reliability.png").stat().st_size


def write_target_corpus(root):
    """Another corpus tree (metadata.csv) of real clips by speakers the run never saw, with other class names:
    angry / calm / happy; `happy` maps to no run class and the run's `fear` is absent."""
    with open(POLISH3 / "metadata.csv") as f:
        source = [row for row in csv.DictReader(f) if row["speaker"] in ("m4", "m5")]
    names = {"anger": "angry", "neutral": "calm", "fear": "happy"}
    rows, taken = [], {}
    for row in source:
        key = (row["speaker"], row["label"])
        if taken.get(key, 0) < 3:
            taken[key] = taken.get(key, 0) + 1
            target = root / "clips" / row["speaker"] / (row["file"].rsplit("/", 1)[-1])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((POLISH3 / row["file"]).read_bytes())
            rows.append(f"clips/{row['speaker']}/{target.name},{names[row['label']]},{row['speaker']},male")
    (root / "metadata.csv").write_text("file,label,speaker,gender\n" + "\n".join(rows) + "\n")
    config = root / "target.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "loader": "audio_folder",
                    "root": str(root),
                    "loader_args": {"labels": ["angry", "calm", "happy"]},
                }
            }
        )
    )
    return config


def test_reported_predictions_are_what_the_saved_checkpoint_gives(runs):
    """A fresh user found train.py's test predictions and predict.py's differing on the same checkpoint and clips
    (probabilities up to 0.34 apart): evaluation batched padded clips that this group-norm backbone sees. Each
    reported (calibrated) probability is now the pipeline's for that clip alone."""
    from modeling.inference import load_pipeline
    from modeling.prediction_fields import probabilities_of

    run_a, _ = runs
    for k in (1, 2):
        pipe = load_pipeline(run_a / f"fold{k}" / "stage2" / "best")
        assert not pipe.model.config.padding_independent
        for split in ("validation", "test"):
            predictions = read_predictions(run_a / f"fold{k}" / f"predictions_{split}.csv")
            for file, probabilities in zip(predictions.files, predictions.probabilities):
                shown = probabilities_of(pipe(str(POLISH3 / file)))
                assert [shown[name] for name in predictions.classes] == pytest.approx(probabilities, abs=2e-6)


def test_score_py_folds_and_ensemble_on_another_corpus(runs, tmp_path):
    run_a, _ = runs
    config = write_target_corpus(tmp_path / "target")
    out = tmp_path / "scored"
    process = subprocess.run(
        [
            sys.executable,
            "score.py",
            "--run-dir",
            str(run_a),
            "--config",
            str(config),
            "--label-map",
            "angry=anger",
            "calm=neutral",
            "--output-dir",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "ensemble: UA" in process.stdout and "left out (no run class): happy (6)" in process.stdout
    scores = json.loads((out / "scores.json").read_text())
    assert scores["n"] == 12 and scores["left_out"] == {"happy": 6} and scores["missing_classes"] == ["fear"]
    assert list(scores["folds"]) == ["fold1", "fold2"]

    long = read_predictions(out / "predictions.csv")
    models = np.array(long.extra["model"])
    by_model = {}
    for name in ("fold1", "fold2", "ensemble"):
        rows = models == name
        by_model[name] = (
            long.probabilities[rows],
            long.labels[rows],
            long.predicted[rows],
            np.array(long.files)[rows],
        )
        probabilities, labels, predicted, files = by_model[name]
        assert len(labels) == 12 and sorted(set(long.classes[i] for i in labels)) == ["anger", "neutral"]
        assert all(f.startswith("clips/m") for f in files)
        expected = compute_ser_metrics(predicted, labels, 3)
        reported = scores["ensemble"] if name == "ensemble" else scores["folds"][name]
        for key in ("ua", "wa", "macro_f1"):
            assert reported[key] == pytest.approx(expected[key]), (name, key)
        assert reported["confusion_matrix"] == expected["confusion_matrix"] and reported["n"] == 12
        for speaker in ("m4", "m5"):  # per-speaker breakdown, recomputed from the CSV's rows
            rows = np.array(long.speakers)[models == name] == speaker
            by_hand = compute_ser_metrics(predicted[rows], labels[rows], 3)
            assert reported["breakdowns"]["speaker"][speaker]["ua"] == pytest.approx(by_hand["ua"])
        assert reported["breakdowns"]["gender"]["male"]["n"] == 12
        assert reported["per_class_recall"][1] is None  # fear: absent from the corpus
    # The ensemble is the mean of the fold models' probabilities (CSV keeps 6 decimals).
    mean = (by_model["fold1"][0] + by_model["fold2"][0]) / 2
    assert np.allclose(by_model["ensemble"][0], mean, atol=2e-6)
    assert (by_model["ensemble"][2] == mean.argmax(axis=1)).mean() >= 11 / 12  # rounding may flip a near-tie
    best_t = json.loads((run_a / "fold1" / "stage2" / "best" / "config.json").read_text())["calibration_temperature"]
    assert scores["calibration"]["fold1"]["temperature"] == best_t and scores["calibrated"] is True
    assert (out / "reliability.png").is_file()
    markdown = (out / "scores.md").read_text()
    assert (
        "Ensemble per gender and per speaker" in markdown
        and "| speaker m4 (too small for an interval) | 6 |" in markdown
    )
    assert (
        "| **ensemble** | 12 |" in markdown and "happy (6)" in markdown and "absent from the corpus: fear" in markdown
    )


def test_score_py_perturb_scores_each_model_on_the_perturbed_audio(runs, tmp_path):
    """--perturb: the perturbed UA of every model equals the UA of the calibrated pipeline run by hand on the clips
    perturbed by hand (same seed and names), and ΔUA = perturbed − clean."""
    from modeling.evaluation.cross_corpus import score_run
    from modeling.evaluation.perturbations import parse_perturbation
    from modeling.inference import load_pipeline

    run_a, _ = runs
    config = write_target_corpus(tmp_path / "target")
    perturbation = parse_perturbation("noise:snr_db=0")
    scores = score_run(
        run_a,
        config,
        tmp_path / "out",
        label_map={"angry": "anger", "calm": "neutral"},
        perturbations=[perturbation],
        perturb_seed=7,
        progress=False,
    )
    entry = scores["perturbations"]["noise:snr_db=0"]
    assert entry["measured"]["mean_snr_db"] == pytest.approx(0.0, abs=0.01)
    rows = [line.split(",") for line in (tmp_path / "target" / "metadata.csv").read_text().splitlines()[1:]]
    rows = [(tmp_path / "target" / r[0], {"angry": 0, "calm": 2}[r[1]]) for r in rows if r[1] != "happy"]
    labels = np.array([label for _, label in rows])
    probabilities = {}
    for k in (1, 2):
        pipe = load_pipeline(run_a / f"fold{k}" / "stage2" / "best")
        clips = [perturbation.apply(load_audio(path), 7, str(path)) for path, _ in rows]
        results = pipe([{"raw": clip, "sampling_rate": 16000} for clip in clips], chunk_length_s=0)
        probabilities[f"fold{k}"] = np.array([[r[f"prob_{c}"] for c in scores["classes"]] for r in results])
    probabilities["ensemble"] = (probabilities["fold1"] + probabilities["fold2"]) / 2
    for name, p in probabilities.items():
        by_hand = compute_ser_metrics(p.argmax(axis=1), labels, 3)
        model = entry["models"][name]
        clean = scores["ensemble"] if name == "ensemble" else scores["folds"][name]
        assert model["ua"] == pytest.approx(by_hand["ua"]) and model["macro_f1"] == pytest.approx(by_hand["macro_f1"])
        assert model["delta_ua"] == pytest.approx(by_hand["ua"] - clean["ua"])
    assert "| `noise:snr_db=0` | mean_snr_db 0.00 |" in (tmp_path / "out" / "scores.md").read_text()
    assert not list((tmp_path / "out").glob(".perturbed-*"))  # the perturbed copies are removed


def test_ensemble_calibrated_as_an_ensemble_on_held_out_utterances(runs, tmp_path):
    """--ensemble-calibration: T_ensemble is the NLL-optimal temperature of log(mean calibrated member
    probabilities) on the held-out rows (recomputed from predictions.csv), applied to the ensemble only; a corpus the
    fold models trained on is refused."""
    from modeling.data import CorpusError
    from modeling.evaluation.calibration import fit_temperature
    from modeling.evaluation.cross_corpus import score_run

    run_a, _ = runs
    config = write_target_corpus(tmp_path / "target")
    label_map = {"angry": "anger", "calm": "neutral"}
    plain = score_run(run_a, config, tmp_path / "plain", label_map=label_map, progress=False)
    scores = score_run(
        run_a, config, tmp_path / "out", label_map=label_map, progress=False, ensemble_calibration=config
    )
    long = read_predictions(tmp_path / "plain" / "predictions.csv")
    models = np.array(long.extra["model"])
    mean = long.probabilities[models == "ensemble"]
    expected = fit_temperature(np.log(np.clip(mean, 1e-12, None)), long.labels[models == "ensemble"])
    assert scores["calibration"]["ensemble"]["temperature"] == pytest.approx(expected, rel=1e-3)
    assert scores["calibration"]["ensemble"]["fitted_on"] == str(config)
    assert scores["calibration"]["fold1"] == plain["calibration"]["fold1"]  # members untouched
    calibrated = read_predictions(tmp_path / "out" / "predictions.csv")
    rows = np.array(calibrated.extra["model"]) == "ensemble"
    by_hand = softmax(np.log(np.clip(mean, 1e-12, None)), scores["calibration"]["ensemble"]["temperature"])
    assert np.allclose(calibrated.probabilities[rows], by_hand, atol=2e-5)
    with pytest.raises(CorpusError, match=r"--ensemble-calibration .*a\.yaml: fold models trained or validated"):
        score_run(
            run_a,
            run_a.parent / "a.yaml",
            tmp_path / "x",
            progress=False,
            ensemble_calibration=run_a.parent / "a.yaml",
        )


def test_score_py_rejects_a_malformed_label_map(runs, tmp_path, capsys):
    from modeling.cli.score import main

    code = main(
        [
            "--run-dir",
            str(runs[0]),
            "--config",
            str(write_target_corpus(tmp_path / "t")),
            "--label-map",
            "angry",
            "--output-dir",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "--label-map expects SOURCE=TARGET (e.g. anger=angry), got 'angry'" in capsys.readouterr().err


def compare(args, tmp_path, name="cmp", subprocess_run=False):
    """compare_runs.py as a command (`subprocess_run`) or through its `main` in this process (no second start of
    torch): (CompletedProcess-like with returncode/stdout/stderr, OUT.md)."""
    out = tmp_path / f"{name}.md"
    argv = [*map(str, args), "--output", str(out)]
    if subprocess_run:
        return subprocess.run(
            [sys.executable, "compare_runs.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
        ), out
    import contextlib
    import io
    import types

    from modeling.cli.compare_runs import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return types.SimpleNamespace(returncode=code, stdout=stdout.getvalue(), stderr=stderr.getvalue()), out


def test_compare_runs_interval_contains_difference_and_is_reproducible(runs, tmp_path):
    run_a, run_b = runs
    process, out = compare([run_a, run_b, "--seed", "3"], tmp_path, subprocess_run=True)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    (comparison,) = report["comparisons"]
    results = {r: json.loads((r / "results.json").read_text()) for r in (run_a, run_b)}
    for metric in ("ua", "wa"):
        boot = comparison["bootstrap"][metric]
        # the observed difference is the difference of the runs' mean test UA/WA over folds
        expected = results[run_b]["mean"][metric] - results[run_a]["mean"][metric]
        assert boot["observed"] == pytest.approx(expected, abs=1e-9)
        assert boot["low"] <= boot["observed"] <= boot["high"]
        for k in ("1", "2"):  # fold names in the report, as in score.py's (results.json keys folds by number)
            assert comparison["per_fold"][f"fold{k}"][metric] == pytest.approx(
                results[run_b]["folds"][k]["test"][metric] - results[run_a]["folds"][k]["test"][metric]
            )
    assert comparison["bootstrap"]["resamples"] == 2000 and report["num_test_utterances"] == 18
    assert report["folds"] == list(comparison["per_fold"]) == ["fold1", "fold2"]
    assert report["runs"][0]["ua"]["mean"] == pytest.approx(results[run_a]["mean"]["ua"])
    # McNemar counts from the per-utterance correctness of the two runs' CSVs
    correct = {
        r: np.concatenate([read_predictions(r / f"fold{k}" / "predictions_test.csv").correct for k in (1, 2)])
        for r in (run_a, run_b)
    }
    assert comparison["mcnemar"]["b"] == int((correct[run_a] & ~correct[run_b]).sum())
    assert comparison["mcnemar"]["c"] == int((~correct[run_a] & correct[run_b]).sum())
    _, again = compare([run_a, run_b, "--seed", "3"], tmp_path, "again")
    assert again.read_text() == out.read_text()
    assert again.with_suffix(".json").read_text() == out.with_suffix(".json").read_text()
    assert "Paired bootstrap (2000 resamples within folds, seed 3)" in out.read_text()


def test_compare_runs_refuses_runs_with_other_test_utterances_or_folds(runs, tmp_path):
    import shutil

    run_a, run_b = runs
    changed = tmp_path / "changed"
    shutil.copytree(run_b, changed, ignore=shutil.ignore_patterns("checkpoint-*", "best"))
    path = changed / "fold2" / "predictions_test.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1].replace("audio/", "other/", 1), *lines[2:]]) + "\n")
    process, _ = compare([run_a, changed], tmp_path)
    assert process.returncode == 2 and "fold2: test utterances differ (9 vs 9 files" in process.stderr
    results = json.loads((changed / "results.json").read_text())
    del results["folds"]["2"]
    (changed / "results.json").write_text(json.dumps(results))
    process, _ = compare([run_a, changed], tmp_path)
    assert process.returncode == 2 and "folds ['1', '2'] vs ['1']" in process.stderr


def test_mcnemar_exact_by_hand():
    from modeling.evaluation.compare import exact_binomial_two_sided, mcnemar_exact

    # b = 1 (first right, other wrong), c = 7: p = 2 · (C(8,0) + C(8,1)) / 2^8 = 18 / 256
    first = np.array([True] * 1 + [False] * 7 + [True] * 5 + [False] * 3)
    other = np.array([False] * 1 + [True] * 7 + [True] * 5 + [False] * 3)
    assert mcnemar_exact(first, other) == {"b": 1, "c": 7, "p_value": pytest.approx(18 / 256)}
    assert exact_binomial_two_sided(1, 8) == pytest.approx(18 / 256)
    # b = c: p = 1; no discordant pairs: p = 1
    assert exact_binomial_two_sided(3, 6) == pytest.approx(1.0)
    assert mcnemar_exact(first, first)["p_value"] == 1.0
    # b = 2, c = 3 (n = 5): P(X ≤ 2) + P(X ≥ 3) = 1
    assert exact_binomial_two_sided(0, 5) == pytest.approx(2 / 32)


def test_model_card_model_index_has_macro_f1(runs):
    from modeling.publishing.model_card import card_data
    from modeling.publishing.run import load_run

    run = load_run(runs[0])
    data = card_data(run, list(run.folds.values()), "ser")
    f1 = [(r.dataset_config, r.metric_value, r.metric_args) for r in data.eval_results if r.metric_type == "f1"]
    expected = [
        (f"fold{k}", round(100 * run.results["folds"][k]["test"]["macro_f1"], 2), {"average": "macro"})
        for k in ("1", "2")
    ]
    assert [(c, pytest.approx(v, abs=0.006), a) for c, v, a in expected] == f1 and "f1" in data.metrics
    from modeling.publishing.model_card import render_fold_card

    card = render_fold_card(run, next(iter(run.folds.values())), "user/ser")
    assert "Per gender and worst test speaker" in card and "| gender male | 18 |" in card


def synthetic_runs(tmp_path, folds=(1, 2), configs=(None, None)):
    """Two runs' test predictions written as train.py does (2 folds × 40 utterances, 3 classes), run B right more
    often, each with its `configs` entry as results.json's config (none when None); returns the two RunTest
    objects of modeling.evaluation.compare."""
    from modeling.evaluation.compare import load_run_test
    from modeling.metrics.predictions import Predictions, predictions_csv
    from modeling.rundir.atomic import atomic_write_text

    classes = ["anger", "fear", "neutral"]
    paths = []
    for (name, skill), config in zip((("a", 0.5), ("b", 0.7)), configs):
        run = tmp_path / name
        entries = {}
        for k in folds:
            labels = np.arange(40) % 3
            right = np.random.default_rng(100 * k + int(skill * 10)).random(40) < skill
            predicted = np.where(right, labels, (labels + 1) % 3)
            probabilities = np.eye(3)[predicted] * 0.8 + 0.2 / 3
            atomic_write_text(
                run / f"fold{k}" / "predictions_test.csv",
                predictions_csv(
                    Predictions(
                        [f"s{k}/u{i:02d}.wav" for i in range(40)], [f"s{k}"] * 40, labels, probabilities, classes
                    )
                ),
            )
            metrics = compute_ser_metrics(predicted, labels, 3)
            entries[str(k)] = {"test": {m: metrics[m] for m in ("ua", "wa", "macro_f1")}}
        results = {"folds": entries, "labels": classes, **({"config": config} if config is not None else {})}
        (run / "results.json").write_text(json.dumps(results))
        paths.append(run)
    return [load_run_test(p) for p in paths]


def test_paired_bootstrap_on_known_predictions(tmp_path):
    from modeling.evaluation.compare import compare_runs, paired_bootstrap

    a, b = synthetic_runs(tmp_path)
    boot = paired_bootstrap(a, b, resamples=2000, seed=1)
    expected_ua = np.mean([b.results["folds"][k]["test"]["ua"] - a.results["folds"][k]["test"]["ua"] for k in "12"])
    assert boot["ua"]["observed"] == pytest.approx(expected_ua)
    assert boot["ua"]["low"] < boot["ua"]["observed"] < boot["ua"]["high"]
    assert boot["wa"]["low"] < boot["wa"]["observed"] < boot["wa"]["high"]
    assert 0.05 < boot["wa"]["high"] - boot["wa"]["low"] < 0.5  # a real interval on 80 utterances
    assert paired_bootstrap(a, b, resamples=2000, seed=1) == boot  # seeded
    assert paired_bootstrap(a, b, resamples=2000, seed=2) != boot
    same = paired_bootstrap(a, a, resamples=2000, seed=1)  # paired: a run against itself differs by exactly 0
    assert (same["ua"]["low"], same["ua"]["high"], same["wa"]["low"], same["wa"]["high"]) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="at least 2000, got 100"):
        compare_runs([tmp_path / "a", tmp_path / "b"], resamples=100)


def test_compare_runs_lists_every_config_difference(tmp_path):
    """A reviewer sees every config key that differs besides the one under study, with both values."""
    config_a = {"seed": 1, "training": {"seed": 1, "logging_steps": 1}, "stage2": {"eal_weight": 0.05, "x": [1, 2]}}
    config_b = {"seed": 1, "training": {"seed": 2, "logging_steps": 1}, "stage2": {"eal_weight": 0.0, "x": [1, 2]}}
    config_b["stage2"]["learning_rate"] = 1e-4  # set in the other run only
    synthetic_runs(tmp_path, configs=(config_a, config_b))
    process, out = compare([tmp_path / "a", tmp_path / "b"], tmp_path)
    assert process.returncode == 0, process.stderr
    (comparison,) = json.loads(out.with_suffix(".json").read_text())["comparisons"]
    assert comparison["config_differences"] == [
        {"key": "stage2.eal_weight", "baseline": 0.05, "other": 0.0},
        {"key": "stage2.learning_rate", "other": 0.0001},
        {"key": "training.seed", "baseline": 1, "other": 2},
    ]
    markdown = out.read_text()
    assert "Config differences (3; baseline vs this run):" in markdown and markdown in process.stdout
    assert "- `training.seed`: 1 vs 2\n" in markdown and "- `stage2.learning_rate`: (not set) vs 0.0001\n" in markdown
    assert (
        f"warning: the configs of {tmp_path / 'a'} and {tmp_path / 'b'} differ in 3 key(s): stage2.eal_weight: 0.05 "
        "vs 0.0; stage2.learning_rate: (not set) vs 0.0001; training.seed: 1 vs 2"
    ) in process.stderr
    process, out = compare([tmp_path / "a", tmp_path / "a"], tmp_path, "same")
    assert json.loads(out.with_suffix(".json").read_text())["comparisons"][0]["config_differences"] == []
    assert "Config differences: none (the configs are identical)." in out.read_text() and not process.stderr


def test_compare_runs_of_one_fold_have_no_std(tmp_path):
    """One fold: the std over folds is undefined — null in OUT.json, "n/a" in OUT.md, never "± 0.00"."""
    a, b = synthetic_runs(tmp_path, folds=(1,))
    process, out = compare([tmp_path / "a", tmp_path / "b"], tmp_path)
    assert process.returncode == 0, process.stderr
    report = json.loads(out.with_suffix(".json").read_text())
    ua = 100 * a.results["folds"]["1"]["test"]["ua"]
    assert report["runs"][0]["ua"] == {"mean": pytest.approx(ua / 100), "std": None}
    assert f"| `{tmp_path / 'a'}` | {ua:.2f} ± n/a |" in out.read_text() and "± 0.00" not in out.read_text()
    assert report["comparisons"][0]["config_differences"] is None  # no config recorded: unknown, not "none"
    assert "Config differences: unknown" in out.read_text() and "no config recorded" in process.stderr


def test_compare_runs_names_both_sides_and_a_loader_difference(tmp_path):
    """The same corpus through two loaders (a hub dataset's `u01.wav` vs an audio folder's `s1/u01.wav`) is refused
    with examples from both runs and the reason, not only the first run's names."""
    from modeling.evaluation.compare import RunMismatchError, compare_runs

    synthetic_runs(tmp_path)
    for path in (tmp_path / "b").glob("fold*/predictions_test.csv"):
        path.write_text(path.read_text().replace("s1/u", "u").replace("s2/u", "u"))
    with pytest.raises(RunMismatchError) as caught:
        compare_runs([tmp_path / "a", tmp_path / "b"])
    message = str(caught.value)
    assert "fold1: test utterances differ (40 vs 40 files; only in the first: ['s1/u00.wav', 's1/u01.wav', " in message
    assert "only in the other: ['u00.wav', 'u01.wav', 'u02.wav']" in message
    assert "only their folders differ, as when the runs read the corpus through different loaders" in message
    for path in (tmp_path / "b").glob("fold*/predictions_test.csv"):  # other utterances: no loader hint
        path.write_text(path.read_text().replace("u0", "v0"))
    with pytest.raises(RunMismatchError, match="only in the other: ") as caught:
        compare_runs([tmp_path / "a", tmp_path / "b"])
    assert "folders differ" not in str(caught.value)


def test_compare_runs_without_output_prints_the_report_only(tmp_path, capsys):
    """`compare_runs.py A B` (no --output) was an argparse error: the report goes to stdout, no file is written."""
    from modeling.cli.compare_runs import main

    synthetic_runs(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    printed = capsys.readouterr().out
    assert sorted(tmp_path.rglob("*")) == before
    _, out = compare([tmp_path / "a", tmp_path / "b"], tmp_path)
    assert printed.strip() == out.read_text().strip() and "ΔUA" in printed


def readme_commands(text, script):
    """Every `python <script> ...` command (or `$ python ...` sample) of `text`, continuations joined, as argv."""
    import shlex

    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip().removeprefix("$ ")
        if line.startswith(f"python {script} "):
            commands.append(shlex.split(line.split(" # ")[0])[2:])
    return commands


def test_readme_commands_parse_and_name_real_configs():
    from modeling.cli import compare_runs, score

    text = "".join((REPO / name).read_text() for name in ("README.md", "docs/evaluation.md", "docs/training.md"))
    scores = [argv for argv in readme_commands(text, "score.py") if argv]
    compares = [argv for argv in readme_commands(text, "compare_runs.py") if argv]
    assert len(scores) >= 4 and len(compares) >= 2
    for argv in scores:
        args = score.parse_args(argv)
        assert args.config.startswith("target/") or (REPO / args.config).is_file(), args.config
    for argv in compares:
        assert compare_runs.parse_args(argv).output.endswith(".md")


def test_target_rows_one_predefined_split_with_a_label_map(tmp_path):
    from fake_corpora import make_msp_podcast_tree

    from modeling.data import CorpusError
    from modeling.data.msp_podcast import load_msp_podcast
    from modeling.evaluation.cross_corpus import target_rows

    dataset = load_msp_podcast(make_msp_podcast_tree(tmp_path / "msp"))
    rows, left_out, missing = target_rows(dataset, ["anger", "fear", "neutral"], {"angry": "anger"}, "test")
    # Test1 in 4 classes: 0003_0001 (A → anger) and 0003_0003 (N → neutral)
    assert [a.rsplit("/", 1)[-1] for a in rows["audio"]] == ["MSP-PODCAST_0003_0001.wav", "MSP-PODCAST_0003_0003.wav"]
    assert rows["label"] == [0, 2] and left_out == {} and missing == ["fear"]
    rows, left_out, _ = target_rows(dataset, ["anger", "fear", "neutral"], {"angry": "anger"}, None)
    assert len(rows) == 4 and left_out == {"happy": 2, "sad": 1}  # every split: happy and sad map to no run class
    with pytest.raises(
        CorpusError,
        match=r"--split dev: not one of the corpus's splits \['test', 'test2', 'train', "
        r"'validation'\]",
    ):
        target_rows(dataset, ["anger"], {}, "dev")
    with pytest.raises(CorpusError, match="no utterance's class maps to the run's classes"):
        target_rows(dataset, ["calm"], {}, None)
