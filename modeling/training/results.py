"""Aggregate finished folds into `results.json`, `results.md`, `confusion_matrix.png` and `tsne.png`.

UA and WA are stored as fractions in [0, 1] in the JSON files and shown as percentages (2 decimals) in
`results.md` and on the console. The standard deviation is over folds, population form (ddof=0); with one fold it
is undefined: null in results.json, "n/a" in the tables (`modeling.metrics.over_folds`, the owner of mean ± std).
"""

import os

import numpy as np

from ..evaluation.breakdowns import breakdown_table, merge_breakdowns, shared_speakers, speaker_dependent_note
from ..evaluation.calibration import calibration_table, plot_reliability
from ..metrics.over_folds import format_mean_std, mean_and_std
from ..prediction_fields import softmax
from ..rundir.atomic import atomic_write_json, atomic_write_text
from ..rundir.layout import CONFUSION_MATRIX, RELIABILITY, TSNE, RunDir
from ..rundir.reader import FinishedRun, fold_name
from .plots import plot_confusion_matrix, plot_tsne
from .selection import selection_sentence, stage_selection


MAX_TSNE_PANELS = 6


def finished_folds(run_dir: str | os.PathLike, num_folds: int) -> dict[int, dict]:
    """{fold number: fold metrics} for every fold k ≤ `num_folds` whose `fold<k>/metrics.json` exists (written
    last), read through `modeling.rundir.reader`."""
    run = FinishedRun(run_dir)
    return {k: run.fold_metrics(k) for k in run.finished_folds() if k <= num_folds}


def tsne_panels(run_dir: str | os.PathLike, fold_numbers: list[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """("fold<k>", stage-2 test embeddings, labels) of each fold that saved its test predictions."""
    run, panels = RunDir(run_dir), []
    for k in fold_numbers:
        path = run.test_predictions(k)
        if path.is_file():
            with np.load(path) as arrays:
                panels.append((fold_name(k), arrays["embeddings"], arrays["labels"]))
    return panels


SUMMARY_METRICS = ("ua", "wa", "macro_f1")


def _over_folds(scores: list[dict]) -> dict[str, list[float]]:
    """{metric: per-fold values} of UA, WA and macro-F1 (macro-F1 only when every fold has it: older runs lack it)."""
    return {
        metric: [score[metric] for score in scores]
        for metric in SUMMARY_METRICS
        if all(score.get(metric) is not None for score in scores)
    }


def aggregate(folds: dict[int, dict], config: dict, label_names: list[str], num_folds: int) -> dict:
    """The `results.json` content: per-fold metrics, mean and std of test UA/WA/macro-F1 over folds, the config."""
    test = {m: mean_and_std(v) for m, v in _over_folds([fold["test"] for fold in folds.values()]).items()}
    stage1 = {m: mean_and_std(v) for m, v in _over_folds([fold["stage1"]["test"] for fold in folds.values()]).items()}
    return {
        "folds": {str(k): fold for k, fold in sorted(folds.items())},
        "mean": {metric: mean for metric, (mean, _) in test.items()},
        "std": {metric: std for metric, (_, std) in test.items()},  # None (null) with one fold: undefined
        "stage1": {
            "mean": {metric: mean for metric, (mean, _) in stage1.items()},
            "std": {metric: std for metric, (_, std) in stage1.items()},
        },
        "labels": list(label_names),
        "breakdowns": merge_breakdowns([fold.get("breakdowns") for fold in folds.values()], len(label_names)),
        "speaker_dependent": shared_speakers(folds),
        "num_folds": num_folds,
        "folds_evaluated": sorted(folds),
        "metric_scale": "fraction",
        "checkpoint_selection": stage_selection(config),  # the validation metric that picked each stage's best/
        "config": config,
    }


def total_confusion_matrix(results: dict) -> np.ndarray:
    """Sum of the test confusion matrices of all folds (every test speaker's predictions together)."""
    return np.sum([np.asarray(fold["test"]["confusion_matrix"]) for fold in results["folds"].values()], axis=0)


def results_table(results: dict, *, scale: float = 100.0, test_speakers: dict | None = None, highlight=None) -> str:
    """Markdown table: one row per fold (test speakers, validation and test UA/WA in %, and the stage-1 model's
    test UA/WA for comparison), then mean ± std. The one table of results.md, the console and the model cards.

    Args:
        scale: 100 for UA/WA stored as fractions (train.py), 1 for a run that stored percents.
        test_speakers: {fold name: test speakers}, instead of each fold's `speakers.test`.
        highlight: a fold name whose row is set in bold (that fold's model card).
    A value absent from `results` shows as "–".
    """

    def percent(value) -> str:
        return "–" if value is None else f"{scale * value:.2f}"

    def pair(scores: dict) -> tuple[str, str]:
        return percent(scores.get("ua")), percent(scores.get("wa"))

    lines = [
        "| Fold | Test speakers | Val UA (%) | Val WA (%) | Test UA (%) | Test WA (%) | Stage-1 test UA / WA (%) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for k, fold in results["folds"].items():
        speakers = (test_speakers or {}).get(str(k)) or (fold.get("speakers") or {}).get("test") or []
        cells = [
            fold_name(k),
            ", ".join(map(str, speakers)) or "–",
            *pair(fold.get("validation") or {}),
            *pair(fold.get("test") or {}),
            " / ".join(pair((fold.get("stage1") or {}).get("test") or {})),
        ]
        if str(k) == str(highlight):
            cells = [f"**{cell}**" if cell != "–" else cell for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    mean, std = results.get("mean") or {}, results.get("std") or {}
    if mean:
        evaluated, total = len(results["folds"]), results.get("num_folds") or len(results["folds"])
        of = f"{evaluated} folds" if evaluated == total else f"{evaluated} of {total} folds"
        ua, wa = (format_mean_std(mean.get(m), std.get(m), scale, std_recorded=m in std) for m in ("ua", "wa"))
        stage1 = " / ".join(pair((results.get("stage1") or {}).get("mean") or {}))
        lines.append(f"| **mean ± std** ({of}) | | | | **{ua}** | **{wa}** | {stage1} |")
    return "\n".join(lines)


def f1_table(results: dict, scale: float = 100.0) -> str:
    """Markdown table of the test macro-F1 and per-class F1 of each fold (in %), then mean ± std of macro-F1."""
    labels = results["labels"]
    lines = [
        "| Fold | Test macro-F1 (%) | " + " | ".join(f"F1 {name} (%)" for name in labels) + " |",
        "|---|---:|" + "---:|" * len(labels),
    ]
    for k, fold in results["folds"].items():
        test = fold.get("test") or {}
        per_class = test.get("per_class_f1") or [None] * len(labels)
        cells = [test.get("macro_f1"), *per_class]
        values = " | ".join("–" if v is None else f"{scale * v:.2f}" for v in cells)
        lines.append(f"| {fold_name(k)} | {values} |")
    mean, std = (results.get("mean") or {}).get("macro_f1"), (results.get("std") or {}).get("macro_f1")
    if mean is not None:
        lines.append(f"| **mean ± std** | **{format_mean_std(mean, std, scale)}** |" + " |" * len(labels))
    return "\n".join(lines)


def breakdown_section(results: dict) -> list[str]:
    """results.md's per-gender and per-speaker table (all folds' test utterances together), when recorded."""
    if not results.get("breakdowns"):
        return []
    b = results["breakdowns"]
    return [
        "Per gender and per test speaker (every fold's test utterances together; 95 % percentile bootstrap "
        f"intervals, {b['resamples']} resamples, seed {b['seed']}; groups under {b['min_group_size']} utterances get "
        "none):",
        "",
        breakdown_table(b),
        "",
    ]


def calibration_section(results: dict) -> list[str]:
    """results.md's calibration table (each fold's test split, T fitted on its validation split), when recorded."""
    folds = {fold_name(k): f["calibration"]["test"] for k, f in results["folds"].items() if f.get("calibration")}
    if not folds:
        return []
    return [
        "Calibration: temperature T fitted per fold on its validation split after checkpoint selection (stored in "
        "the checkpoint's `calibration_temperature`); expected calibration error (15 bins) and Brier score of the "
        "test predictions before and after:",
        "",
        calibration_table(folds),
        "",
        f"![Reliability diagram (all test folds)]({RELIABILITY})",
        "",
    ]


def reliability_arrays(run_dir: str | os.PathLike, fold_numbers: list[int]):
    """(uncalibrated, calibrated probabilities, labels) of every fold's test split that saved logits (pooled)."""
    run, parts = RunDir(run_dir), []
    for k in fold_numbers:
        path = run.test_predictions(k)
        if path.is_file():
            with np.load(path) as arrays:
                if "logits" in arrays and "temperature" in arrays:
                    logits, temperature = arrays["logits"], float(arrays["temperature"])
                    parts.append((softmax(logits), softmax(logits, temperature), arrays["labels"]))
    if not parts:
        return None
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))


def results_markdown(results: dict) -> str:
    config = results["config"]
    model = config["model"]["name_or_path"] or "randomly initialised backbone (model.random_init)"
    stage2 = config["stage2"]
    evaluated = results["folds_evaluated"]
    lines = [
        "# Results",
        "",
        f"- Corpus: `{config['data']['loader']}` at `{config['data']['root']}`; "
        f"labels: {', '.join(results['labels'])}",
        f"- Folds: `{config['data']['folds']}`, {len(evaluated)} of {results['num_folds']} evaluated ({evaluated})",
        f"- Backbone: {model}",
        f"- Stage 2: pooling `{stage2['pooling']}`, λ_EAL = {stage2['eal_weight']}, λ_FUAL = {stage2['fual_weight']}, "
        f"margin = {stage2['eal_margin']}",
        "",
        *([speaker_dependent_note(results["speaker_dependent"]), ""] if results.get("speaker_dependent") else []),
        "UA = unweighted accuracy (mean per-class recall), WA = weighted accuracy (overall accuracy), "
        "in percent here; "
        "`results.json` stores the same values as fractions in [0, 1]. "
        f"{selection_sentence(config)} std is over folds (ddof=0).",
        "",
        results_table(results),
        "",
        "Macro-F1 = mean over classes of per-class F1 (the Odyssey 2024 challenge's ranking metric); per-fold "
        "predictions with class probabilities are in `fold<k>/predictions_{validation,test}.csv`.",
        "",
        f1_table(results),
        "",
        *breakdown_section(results),
        *calibration_section(results),
        f"![Confusion matrix (all test folds)]({CONFUSION_MATRIX})",
        "",
        f"![t-SNE of utterance embeddings]({TSNE})",
        "",
    ]
    return "\n".join(lines)


def write_results(
    run_dir: str | os.PathLike, results: dict, tsne_panels: list[tuple[str, np.ndarray, np.ndarray]]
) -> None:
    """results.json, results.md and the two figures."""
    run = RunDir(run_dir)
    atomic_write_json(run.results_json, results)
    atomic_write_text(run.results_md, results_markdown(results))
    plot_confusion_matrix(
        total_confusion_matrix(results),
        results["labels"],
        run.confusion_matrix,
        title=f"Test confusion matrix, folds {results['folds_evaluated']}",
    )
    if tsne_panels:
        plot_tsne(tsne_panels[:MAX_TSNE_PANELS], results["labels"], run.tsne)
    reliability = reliability_arrays(run_dir, results["folds_evaluated"])
    if reliability is not None:
        plot_reliability(*reliability, run.reliability, title=f"Test folds {results['folds_evaluated']}")


__all__ = [
    "SUMMARY_METRICS",
    "aggregate",
    "f1_table",
    "finished_folds",
    "results_markdown",
    "results_table",
    "total_confusion_matrix",
    "tsne_panels",
    "write_results",
]
