"""Compare finished train.py runs on the same folds and test utterances (`compare_runs.py`).

For every run: mean ± std (ddof=0; null / "n/a" for a one-fold run) over folds of test UA, WA and macro-F1 (from
`results.json`). Against the first
run, per fold: the differences. Paired statistics on the test utterances of all folds (each fold's
`predictions_test.csv`, matched by file):

- Bootstrap: each resample draws, within every fold, as many utterances as the fold has, with replacement (the
  same draw for both runs: paired); the statistic is the mean over folds of the per-fold UA (or WA) — the number
  the results tables report — and ΔUA = other − first. The 95 % interval is the 2.5th–97.5th percentile of the
  resampled differences (percentile bootstrap; seeded, so the same seed gives the same interval).
- Per gender and per test speaker: the differences of results.json's breakdowns (`modeling.evaluation.breakdowns`;
  point differences, since a group's own interval is in each run's results).
- McNemar's exact test on per-utterance correctness: b = first right and other wrong, c = the reverse;
  p = two-sided binomial test of b successes in b + c trials with p = 0.5 (`scipy.stats.binomtest`; by hand
  without scipy); p = 1 when b + c = 0.
Runs whose folds, test files or labels differ are refused (RunMismatchError), since pairing would be meaningless.
Every other difference of the two runs' configs (results.json's `config`) is listed, none left out: dotted keys with
the baseline's and the other run's value (`training.seed: 1 vs 2`), so a reviewer sees what else than the setting
under study changed.
"""

import json
import math
import os
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from ..metrics.over_folds import format_mean_std, format_signed, mean_and_std
from ..metrics.predictions import read_predictions
from ..rundir.reader import FinishedRun, fold_name


METRICS = ("ua", "wa", "macro_f1")


class RunMismatchError(ValueError):
    """The runs cannot be paired: different folds, test utterances or labels (the message says which)."""


@dataclass
class RunTest:
    """One run's test predictions per fold, aligned by file: {fold: (files, labels (N,), correct (N,) bool)}."""

    path: str
    results: dict
    folds: dict[str, tuple[list[str], np.ndarray, np.ndarray]]


def load_run_test(path: str | os.PathLike) -> RunTest:
    """One run's results and test predictions, read through `modeling.rundir.reader` (`RunReadError`, a ValueError,
    names a missing results.json or predictions_test.csv)."""
    run = FinishedRun(path)
    results = run.results()
    folds = {}
    for k in results["folds"]:
        predictions = read_predictions(run.predictions(k, "test"))
        order = np.argsort(predictions.files, kind="stable")
        folds[k] = ([predictions.files[i] for i in order], predictions.labels[order], predictions.correct[order])
    return RunTest(str(path), results, folds)


def _file_difference(files_a: list[str], files_b: list[str]) -> str:
    """What tells two runs' test files apart: counts, examples from each side, and a hint when they differ only by
    folder (the same corpus read by two loaders: a hub dataset names `m1.flac`, an audio folder `audio/m1.flac`)."""
    only_a, only_b = sorted(set(files_a) - set(files_b)), sorted(set(files_b) - set(files_a))
    text = f"{len(files_a)} vs {len(files_b)} files; only in the first: {only_a[:3]}, only in the other: {only_b[:3]}"
    if sorted(PurePosixPath(f).name for f in files_a) == sorted(PurePosixPath(f).name for f in files_b):
        text += (
            "; the file names are the same, only their folders differ, as when the runs read the corpus through "
            "different loaders (data.loader) or from another folder layout: utterances are paired by their path, so "
            "train both runs the same way"
        )
    return text


def check_pairable(first: RunTest, other: RunTest):
    problems = []
    if sorted(first.folds) != sorted(other.folds):
        problems.append(f"folds {sorted(first.folds)} vs {sorted(other.folds)}")
    for k in sorted(set(first.folds) & set(other.folds)):
        (files_a, labels_a, _), (files_b, labels_b, _) = first.folds[k], other.folds[k]
        if files_a != files_b:
            problems.append(f"{fold_name(k)}: test utterances differ ({_file_difference(files_a, files_b)})")
        elif not np.array_equal(labels_a, labels_b):
            count = int((labels_a != labels_b).sum())
            problems.append(f"{fold_name(k)}: true labels differ on {count} test utterance(s)")
    if first.results.get("labels") != other.results.get("labels"):
        problems.append(f"classes {first.results.get('labels')} vs {other.results.get('labels')}")
    if problems:
        raise RunMismatchError(f"cannot compare {first.path} with {other.path}: " + "; ".join(problems) + ".")


def _resampled_scores(labels: np.ndarray, correct: np.ndarray, draws: np.ndarray, num_labels: int):
    """(UA, WA) of each resample: draws (B, n) row indices into one fold's utterances → two (B,) arrays."""
    hit, drawn_labels = correct[draws], labels[draws]
    recalls = []
    for c in range(num_labels):
        is_c = drawn_labels == c
        support = is_c.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(support > 0, (hit & is_c).sum(axis=1) / support, np.nan))
    return np.nanmean(np.stack(recalls, axis=1), axis=1), hit.mean(axis=1)


def paired_bootstrap(first: RunTest, other: RunTest, resamples: int = 2000, seed: int = 0) -> dict:
    """95 % percentile intervals of ΔUA and ΔWA (other − first; fractions), resampled within folds.

    Returns {"ua": {"observed", "low", "high"}, "wa": {...}, "resamples", "seed"}.
    """
    rng = np.random.default_rng(seed)
    num_labels = len(first.results["labels"])
    deltas = {"ua": np.zeros(resamples), "wa": np.zeros(resamples)}
    observed = {"ua": 0.0, "wa": 0.0}
    for k in sorted(first.folds):
        _, labels, correct_a = first.folds[k]
        correct_b = other.folds[k][2]
        n = len(labels)
        draws = rng.integers(0, n, size=(resamples, n))
        identity = np.arange(n)[None, :]
        for name, (a, b) in zip(
            ("ua", "wa"),
            zip(
                _resampled_scores(labels, correct_a, draws, num_labels),
                _resampled_scores(labels, correct_b, draws, num_labels),
            ),
        ):
            deltas[name] += (b - a) / len(first.folds)
        full_a = _resampled_scores(labels, correct_a, identity, num_labels)
        full_b = _resampled_scores(labels, correct_b, identity, num_labels)
        for i, name in enumerate(("ua", "wa")):
            observed[name] += float(full_b[i][0] - full_a[i][0]) / len(first.folds)
    out = {
        name: {
            "observed": observed[name],
            "low": float(np.percentile(deltas[name], 2.5)),
            "high": float(np.percentile(deltas[name], 97.5)),
        }
        for name in ("ua", "wa")
    }
    return {**out, "resamples": resamples, "seed": seed}


def exact_binomial_two_sided(successes: int, trials: int) -> float:
    """Two-sided exact binomial p-value at p = 0.5 (the sum of the probabilities of outcomes no more likely than
    the observed one, as scipy.stats.binomtest)."""
    if trials == 0:
        return 1.0
    probabilities = [math.comb(trials, i) / 2.0**trials for i in range(trials + 1)]
    observed = probabilities[successes]
    return float(min(1.0, sum(p for p in probabilities if p <= observed * (1 + 1e-7))))


def mcnemar_exact(correct_first: np.ndarray, correct_other: np.ndarray) -> dict:
    """Exact McNemar test on paired per-utterance correctness: {"b", "c", "p_value"}."""
    b = int((correct_first & ~correct_other).sum())
    c = int((~correct_first & correct_other).sum())
    try:
        from scipy.stats import binomtest

        p = float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    except ImportError:
        p = exact_binomial_two_sided(b, b + c)
    return {"b": b, "c": c, "p_value": p}


def _summary(run: RunTest) -> dict:
    folds = run.results["folds"]
    values = {m: [folds[k]["test"].get(m) for k in sorted(folds)] for m in METRICS}
    return {m: dict(zip(("mean", "std"), mean_and_std(v))) if None not in v else None for m, v in values.items()}


def flatten_config(config: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested config ({"training": {"seed": 1}} → {"training.seed": 1}); lists and empty
    sections are values."""
    flat = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def config_differences(first: dict | None, other: dict | None) -> list[dict] | None:
    """Every config key whose value differs, sorted: [{"key": "training.seed", "baseline": 1, "other": 2}]; a key
    set in one run only lacks the other's field. None when a run's results.json records no config (older runs)."""
    if first is None or other is None:
        return None
    a, b = flatten_config(first), flatten_config(other)
    differences = []
    for key in sorted(set(a) | set(b)):
        if key not in b or key not in a or a[key] != b[key]:
            differences.append(
                {"key": key, **({"baseline": a[key]} if key in a else {}), **({"other": b[key]} if key in b else {})}
            )
    return differences


def _value(entry: dict, side: str) -> str:
    if side not in entry:
        return "(not set)"
    value = entry[side]
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def difference_lines(differences: list[dict] | None) -> list[str]:
    """`key: baseline value vs other value`, one per differing config key (no line when the configs are equal)."""
    return [f"{d['key']}: {_value(d, 'baseline')} vs {_value(d, 'other')}" for d in differences or []]


def compare_runs(paths: list[str | os.PathLike], resamples: int = 2000, seed: int = 0) -> dict:
    """The comparison of `paths[1:]` against `paths[0]` (see the module docstring); the content of OUT.json.

    Raises RunMismatchError when a run's folds, test files or labels differ from the first run's,
    `RunReadError` (a ValueError) for a run without results.json or predictions_test.csv, ValueError for < 2 runs or
    resamples < 2000.
    """
    if len(paths) < 2:
        raise ValueError(f"compare_runs needs at least two runs, got {len(paths)}.")
    if resamples < 2000:
        raise ValueError(f"--resamples must be at least 2000, got {resamples}.")
    runs = [load_run_test(path) for path in paths]
    first = runs[0]
    for other in runs[1:]:
        check_pairable(first, other)
    comparisons = []
    for other in runs[1:]:
        per_fold = {
            fold_name(k): {
                m: _difference(other.results["folds"][k]["test"], first.results["folds"][k]["test"], m)
                for m in METRICS
            }
            for k in sorted(first.folds, key=int)
        }
        correct_first = np.concatenate([first.folds[k][2] for k in sorted(first.folds)])
        correct_other = np.concatenate([other.folds[k][2] for k in sorted(first.folds)])
        comparisons.append(
            {
                "run": other.path,
                "config_differences": config_differences(first.results.get("config"), other.results.get("config")),
                "per_fold": per_fold,
                "per_group": group_differences(first.results.get("breakdowns"), other.results.get("breakdowns")),
                "bootstrap": paired_bootstrap(first, other, resamples, seed),
                "mcnemar": mcnemar_exact(correct_first, correct_other),
            }
        )
    return {
        "runs": [{"run": run.path, **_summary(run)} for run in runs],
        "baseline": first.path,
        "folds": [fold_name(k) for k in sorted(first.folds, key=int)],
        "num_test_utterances": int(sum(len(f[0]) for f in first.folds.values())),
        "comparisons": comparisons,
    }


def group_differences(first: dict | None, other: dict | None) -> dict | None:
    """Per gender and per test speaker (results.json's `breakdowns`, all folds together): {"gender": {name: {"n",
    "ua", "wa", "macro_f1"}}, "speaker": {...}}, each Δ = other − first (fractions); None when a run has no
    breakdowns (trained before they were recorded). Groups present in one run only are left out."""
    if not first or not other:
        return None
    out = {}
    for grouping in ("gender", "speaker"):
        a, b = first.get(grouping) or {}, other.get(grouping) or {}
        out[grouping] = {
            name: {"n": a[name]["n"], **{m: _difference(b[name], a[name], m) for m in METRICS}}
            for name in a
            if name in b
        }
    return out


def _difference(other: dict, first: dict, metric: str):
    return None if other.get(metric) is None or first.get(metric) is None else float(other[metric] - first[metric])


def _pm(entry) -> str:
    return "–" if entry is None else format_mean_std(entry["mean"], entry["std"])


def _signed(value) -> str:
    return format_signed(value)


def _group_lines(per_group: dict | None) -> list[str]:
    if not per_group:
        return []
    lines = ["", "| Group (all folds' test utterances) | n | ΔUA | ΔWA | ΔMacro-F1 |", "|---|---:|---:|---:|---:|"]
    for grouping in ("gender", "speaker"):
        lines += [
            f"| {grouping} {name} | {d['n']} | " + " | ".join(_signed(d[m]) for m in METRICS) + " |"
            for name, d in per_group[grouping].items()
        ]
    return lines


def _config_lines(differences: list[dict] | None) -> list[str]:
    if differences is None:
        return ["", "Config differences: unknown (a run's results.json records no config)."]
    if not differences:
        return ["", "Config differences: none (the configs are identical)."]
    lines = ["", f"Config differences ({len(differences)}; baseline vs this run):", ""]
    return lines + [f"- `{d['key']}`: {_value(d, 'baseline')} vs {_value(d, 'other')}" for d in differences]


def comparison_markdown(report: dict) -> str:
    """OUT.md: the runs' mean ± std, then per comparison the per-fold differences, the bootstrap intervals and
    McNemar's p-value (percentage points)."""
    lines = [
        "# Run comparison",
        "",
        f"Test utterances: {report['num_test_utterances']} in folds {report['folds']}; differences are against "
        f"the first run (`{report['baseline']}`), in percentage points.",
        "",
        "| Run | UA (%) | WA (%) | Macro-F1 (%) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| `{r['run']}` | {_pm(r['ua'])} | {_pm(r['wa'])} | {_pm(r['macro_f1'])} |" for r in report["runs"]]
    for comparison in report["comparisons"]:
        boot, mcnemar = comparison["bootstrap"], comparison["mcnemar"]
        lines += [
            "",
            f"## `{comparison['run']}` − `{report['baseline']}`",
            "",
            "| Fold | ΔUA | ΔWA | ΔMacro-F1 |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | " + " | ".join(_signed(d[m]) for m in METRICS) + " |"
            for name, d in comparison["per_fold"].items()
        ]
        lines += _config_lines(comparison.get("config_differences", []))
        lines += _group_lines(comparison.get("per_group"))
        lines += ["", f"Paired bootstrap ({boot['resamples']} resamples within folds, seed {boot['seed']}), 95 % CI:"]
        lines += [
            f"- Δ{m.upper()} {_signed(boot[m]['observed'])} [{_signed(boot[m]['low'])}, {_signed(boot[m]['high'])}]"
            for m in ("ua", "wa")
        ]
        lines.append(
            f"- McNemar exact test: first right / other wrong b = {mcnemar['b']}, reverse c = {mcnemar['c']}, "
            f"p = {mcnemar['p_value']:.4g}"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "RunMismatchError",
    "compare_runs",
    "comparison_markdown",
    "config_differences",
    "difference_lines",
    "flatten_config",
    "exact_binomial_two_sided",
    "load_run_test",
    "mcnemar_exact",
    "paired_bootstrap",
]
