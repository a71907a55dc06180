"""Who does the model fail? UA / WA / macro-F1 per test speaker and per gender, each with a bootstrap 95 % interval,
and the worst speaker (`results.json`, `scores.json`, the model cards, `compare_runs.py`).

Definitions (the same rules as `modeling/metrics/ser_accuracy`): UA = mean recall over the classes that have
references in the group (a speaker who never says "sad" is scored on the other classes), WA = accuracy, macro-F1 =
mean F1 over the classes with references. Everything is computed from the group's confusion matrix (rows = true,
columns = predicted), which is a sufficient statistic of its (label, predicted) pairs.

Interval: percentile bootstrap (2.5th and 97.5th percentiles of `resamples` resampled scores). Drawing n utterances
with replacement from the group's n (label, predicted) pairs is a multinomial draw of n over the confusion matrix's
cells with the cells' frequencies as probabilities, so each resample is `rng.multinomial(n, matrix / n)` — the same
distribution as index resampling, without materialising the draws. Seeded per group (the seed and the group's name),
so the same inputs give the same interval in every process. A group with fewer than `MIN_GROUP_SIZE` utterances gets
no interval (`"interval": null, "too_small": true`): it is listed, never hidden.
"""

import zlib
from collections.abc import Sequence

import numpy as np

from ..rundir.reader import fold_name


MIN_GROUP_SIZE = 10
DEFAULT_RESAMPLES = 1000
METRICS = ("ua", "wa", "macro_f1")
GROUPINGS = ("speaker", "gender")
UNKNOWN_GROUP = "unknown"


def matrix_scores(matrices) -> dict[str, np.ndarray]:
    """{"ua", "wa", "macro_f1"} of a batch of confusion matrices (B, C, C) → three (B,) arrays (one (C, C) matrix →
    three 0-d arrays). Classes without references in a matrix are left out of its UA and macro-F1 (NaN when a matrix
    is empty)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    support, predicted = matrices.sum(axis=-1), matrices.sum(axis=-2)
    hits = np.diagonal(matrices, axis1=-2, axis2=-1)
    present = support > 0
    classes = present.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, hits / np.where(present, support, 1), 0.0)
        f1 = np.where(present, 2 * hits / np.where(present, support + predicted, 1), 0.0)
        return {
            "ua": np.where(classes > 0, recall.sum(axis=-1) / classes, np.nan),
            "wa": hits.sum(axis=-1) / support.sum(axis=-1),
            "macro_f1": np.where(classes > 0, f1.sum(axis=-1) / classes, np.nan),
        }


def confusion_matrix(labels, predicted, num_labels: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return matrix


def _group_seed(seed: int, name: str) -> list[int]:
    return [int(seed), zlib.crc32(str(name).encode())]


def group_scores(matrix, resamples: int = DEFAULT_RESAMPLES, seed: int = 0, name: str = "") -> dict:
    """Scores of one group from its (C, C) confusion matrix: {"n", "ua", "wa", "macro_f1", "interval" ({metric:
    [low, high]}, fractions; None when too small), "too_small", "confusion_matrix"}."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = int(matrix.sum())
    point = {key: float(value) for key, value in matrix_scores(matrix).items()}
    too_small = n < MIN_GROUP_SIZE
    interval = None
    if not too_small:
        rng = np.random.default_rng(_group_seed(seed, name))
        draws = rng.multinomial(n, matrix.ravel() / n, size=resamples).reshape(resamples, *matrix.shape)
        resampled = matrix_scores(draws)
        interval = {
            key: [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]
            for key, values in resampled.items()
        }
    return {"n": n, **point, "interval": interval, "too_small": too_small, "confusion_matrix": matrix.tolist()}


def _from_matrices(matrices: dict, num_labels: int, resamples: int, seed: int) -> dict:
    out = {"resamples": resamples, "seed": seed, "min_group_size": MIN_GROUP_SIZE, "confidence": 0.95}
    for grouping in GROUPINGS:
        groups = matrices.get(grouping) or {}
        out[grouping] = {name: group_scores(groups[name], resamples, seed, name) for name in sorted(groups, key=str)}
    speakers = out["speaker"]
    worst = min(speakers, key=lambda s: (speakers[s]["ua"], str(s))) if speakers else None
    out["worst_speaker"] = (
        None if worst is None else {"speaker": worst, **{k: speakers[worst][k] for k in ("n", "ua")}}
    )
    return out


def breakdowns(
    labels,
    predicted,
    groups: dict[str, Sequence[str]],
    num_labels: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """Per-group scores of one set of predictions.

    Args:
        labels, predicted: (N,) true and predicted class ids.
        groups: {"speaker": (N,) speaker of each utterance, "gender": (N,) gender ("" counts as "unknown")}; either
            may be absent.
        num_labels: C.
    Returns:
        {"speaker": {name: group_scores}, "gender": {name: group_scores}, "worst_speaker": {"speaker", "n", "ua"}
        (lowest UA; ties by name) or None, "resamples", "seed", "min_group_size", "confidence"}.
    Raises:
        ValueError: a group column whose length is not N.
    """
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    matrices = {}
    for grouping in GROUPINGS:
        values = groups.get(grouping)
        if values is None:
            continue
        if len(values) != len(labels):
            raise ValueError(f"breakdowns: {len(values)} {grouping} values for {len(labels)} utterances.")
        names = [str(v) if str(v) else UNKNOWN_GROUP for v in values]
        matrices[grouping] = {
            name: confusion_matrix(labels[mask], predicted[mask], num_labels)
            for name in sorted(set(names))
            for mask in [np.array([n == name for n in names])]
        }
    return _from_matrices(matrices, num_labels, resamples, seed)


def merge_breakdowns(parts: Sequence[dict], num_labels: int) -> dict:
    """The breakdown of several disjoint sets of predictions together (e.g. every fold's test speakers): each group's
    confusion matrices summed, scores and intervals recomputed (same resamples and seed as the first part)."""
    parts = [p for p in parts if p]
    if not parts:
        return {}
    matrices = {grouping: {} for grouping in GROUPINGS}
    for part in parts:
        for grouping in GROUPINGS:
            for name, scores in (part.get(grouping) or {}).items():
                previous = matrices[grouping].get(name, 0)
                matrices[grouping][name] = previous + np.asarray(scores["confusion_matrix"], dtype=np.int64)
    return _from_matrices(matrices, num_labels, parts[0]["resamples"], parts[0]["seed"])


def shared_speakers(folds: dict) -> dict[str, list[str]]:
    """{fold: speakers its test split shares with its train or validation split} of results.json-style folds
    ({fold: {"speakers": {"train", "validation", "test"}}}); only the speaker-dependent folds appear."""
    shared = {}
    for k, fold in folds.items():
        speakers = fold.get("speakers") or {}
        seen = set(speakers.get("train") or []) | set(speakers.get("validation") or [])
        common = sorted(set(speakers.get("test") or []) & seen - {""})
        if common:
            shared[str(k)] = common
    return shared


def _model_name(key) -> str:
    """A fold's name (`fold<k>`, the run reader's naming) or another model's key as it is (e.g. "ensemble")."""
    try:
        return fold_name(key)
    except (ValueError, TypeError):
        return str(key)


def speaker_dependent_note(shared: dict[str, list[str]]) -> str:
    """One Markdown line labelling speaker-dependent results ("" when every fold is speaker-independent)."""
    if not shared:
        return ""
    folds = ", ".join(f"{_model_name(k)} ({len(s)} shared)" for k, s in shared.items())
    return (
        f"**Speaker-dependent results**: the test speakers of {folds} also appear in that model's training or "
        "validation data, so these numbers are not speaker-independent."
    )


def _percent(value) -> str:
    return "–" if value is None or value != value else f"{100 * value:.1f}"


def _cell(scores: dict, metric: str) -> str:
    if scores["interval"] is None:
        return _percent(scores[metric])
    low, high = scores["interval"][metric]
    return f"{_percent(scores[metric])} [{_percent(low)}, {_percent(high)}]"


def breakdown_table(breakdown: dict, groupings: Sequence[str] = ("gender", "speaker")) -> str:
    """Markdown table: one row per gender then per speaker, UA / WA / macro-F1 in % with the 95 % interval in
    brackets; "too small" where a group has fewer than `MIN_GROUP_SIZE` utterances (no interval)."""
    lines = [
        "| Group | n | UA (%) [95 % CI] | WA (%) [95 % CI] | Macro-F1 (%) [95 % CI] |",
        "|---|---:|---:|---:|---:|",
    ]
    for grouping in groupings:
        for name, scores in (breakdown.get(grouping) or {}).items():
            note = " (too small for an interval)" if scores["too_small"] else ""
            cells = [f"{grouping} {name}{note}", str(scores["n"]), *(_cell(scores, m) for m in METRICS)]
            lines.append("| " + " | ".join(cells) + " |")
    worst = breakdown.get("worst_speaker")
    if worst:
        lines += ["", f"Worst speaker: {worst['speaker']} (UA {_percent(worst['ua'])} %, n = {worst['n']})."]
    return "\n".join(lines)


def short_breakdown_table(breakdown: dict) -> str:
    """The model cards' short table: one row per gender and the worst speaker (UA / macro-F1 with 95 % intervals)."""
    lines = ["| Group | n | UA (%) [95 % CI] | Macro-F1 (%) [95 % CI] |", "|---|---:|---:|---:|"]
    rows = [(f"gender {name}", s) for name, s in (breakdown.get("gender") or {}).items()]
    worst = breakdown.get("worst_speaker")
    if worst:
        rows.append((f"worst speaker ({worst['speaker']})", breakdown["speaker"][worst["speaker"]]))
    for title, s in rows:
        note = " (too small for an interval)" if s["too_small"] else ""
        lines.append(f"| {title}{note} | {s['n']} | {_cell(s, 'ua')} | {_cell(s, 'macro_f1')} |")
    return "\n".join(lines)


def breakdown_summary(breakdown: dict) -> str:
    """One line: per-gender UA and the worst speaker's UA (for the console and short tables)."""
    genders = ", ".join(f"{name} {_percent(s['ua'])}" for name, s in (breakdown.get("gender") or {}).items())
    worst = breakdown.get("worst_speaker")
    tail = f"; worst speaker {worst['speaker']} UA {_percent(worst['ua'])} (n = {worst['n']})" if worst else ""
    return f"UA by gender (%): {genders or '–'}{tail}"


__all__ = [
    "DEFAULT_RESAMPLES",
    "MIN_GROUP_SIZE",
    "breakdown_summary",
    "breakdown_table",
    "breakdowns",
    "confusion_matrix",
    "group_scores",
    "matrix_scores",
    "merge_breakdowns",
    "shared_speakers",
    "short_breakdown_table",
    "speaker_dependent_note",
]
