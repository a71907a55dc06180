"""Score a finished train.py run on a corpus (`score.py`): every fold's stage-2 best model and their ensemble.

The ensemble's class probabilities are the mean of the fold models' softmax outputs. Target classes are renamed to
the run's with a label map (`anger=angry`); rows whose class maps to none of the run's classes are left out and
counted; a run class the corpus lacks is reported (its recall is undefined, so UA averages over the others).

Outputs (in `output_dir`): `scores.json`, `scores.md`, `predictions.csv` (long format: one row per model and
utterance, `model` = fold<k> or ensemble, then the columns of `modeling.metrics.predictions`).
"""

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification
from ..data import CorpusError
from ..data.checks import DatasetCheckError, find_bad_audio
from ..metrics import compute_ser_metrics
from ..metrics.predictions import Predictions, predictions_csv, relative_file
from ..prediction_fields import softmax
from ..rundir.atomic import atomic_write_json, atomic_write_text
from ..rundir.reader import FinishedRun, fold_name
from ..training.experiment import load_run_dataset
from ..training.run_config import DEFAULTS, ConfigError, _check_keys, read_config_file
from ..training.scoring import PER_CLASS, predict


logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
SCORE_KEYS = ("ua", "wa", "macro_f1", *PER_CLASS, "confusion_matrix")


def parse_label_map(items: list[str] | None) -> dict[str, str]:
    """["anger=angry", ...] → {"anger": "angry"} (items of every repeated `--label-map`, in order).

    Raises:
        CorpusError: a malformed item, or one source class mapped to two targets (both named).
    """
    mapping, problems = {}, []
    for item in items or []:
        source, sep, target = item.partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target:
            problems.append(f"--label-map expects SOURCE=TARGET (e.g. anger=angry), got {item!r}.")
        elif mapping.get(source, target) != target:
            problems.append(
                f"--label-map: {source!r} is mapped twice ({source}={mapping[source]}, {source}={target})."
            )
        else:
            mapping[source] = target
    if problems:
        raise CorpusError(" ".join(problems))
    return mapping


def label_map_problems(label_map: dict[str, str], corpus_classes, classes: list[str]) -> list[str]:
    """Every map entry that fits nothing: a source class the corpus lacks (e.g. the map written the wrong way
    round), a target that is not one of the run's classes. Such an entry would silently leave rows out."""
    corpus_classes = sorted(set(corpus_classes))
    problems = []
    for source, target in label_map.items():
        if source not in corpus_classes:
            problems.append(
                f"--label-map {source}={target}: the corpus has no class {source!r} (its classes: "
                f"{', '.join(corpus_classes)}); SOURCE is the corpus's class, TARGET the run's."
            )
        if target not in classes:
            problems.append(
                f"--label-map {source}={target}: {target!r} is not one of the run's classes ({', '.join(classes)})."
            )
    return problems


def run_models(run_dir: str | os.PathLike) -> tuple[dict[int, Path], list[str]]:
    """({fold: stage-2 best dir}, the run's classes in label-id order), read through `modeling.rundir.reader`.
    Raises FileNotFoundError when the run has no stage-2 best model, `RunReadError` (a ValueError) when the folds
    disagree on the classes."""
    run = FinishedRun(run_dir)
    models = run.best_models("stage2")
    if not models:
        raise FileNotFoundError(f"{run.path}: no fold<k>/stage2/best model (is it a finished train.py run?).")
    return models, run.labels()


def target_rows(dataset: Dataset, classes: list[str], label_map: dict[str, str], split: str | None):
    """(rows to score with `label` = the run's class id, {left-out target class: count}, run classes absent).

    Raises:
        CorpusError: a label-map entry that fits nothing (`label_map_problems`, all listed), an unknown split, no
            row left to score.
    """
    names = dataset.features["label"].names
    corpus_classes = [
        names[label] if label >= 0 else text for label, text in zip(dataset["label"], dataset["label_text"])
    ]
    problems = label_map_problems(label_map, corpus_classes, classes)
    if problems:
        raise CorpusError("\n".join(problems))
    if split is not None:
        if "split" not in dataset.column_names:
            raise CorpusError(f"--split {split}: this corpus has no predefined splits (no `split` column).")
        present = sorted(set(dataset["split"]))
        if split not in present:
            raise CorpusError(f"--split {split}: not one of the corpus's splits {present}.")
        dataset = dataset.select([i for i, s in enumerate(dataset["split"]) if s == split])
    index = {name: i for i, name in enumerate(classes)}
    keep, ids, left_out = [], [], Counter()
    for row, (label, text) in enumerate(zip(dataset["label"], dataset["label_text"])):
        name = names[label] if label >= 0 else text
        target = label_map.get(name, name)
        if target in index:
            keep.append(row)
            ids.append(index[target])
        else:
            left_out[name] += 1
    if not keep:
        raise CorpusError(
            f"no utterance's class maps to the run's classes {classes} (corpus classes: {dict(left_out)}); "
            "pass --label-map SOURCE=TARGET."
        )
    rows = dataset.select(keep).remove_columns("label").add_column("label", ids)
    missing = [name for name in classes if index[name] not in set(ids)]
    return rows, dict(sorted(left_out.items())), missing


def corpus_config(config_path: str | os.PathLike, data_dir: str | None = None) -> dict:
    """{"data": ...} of a corpus config (any train.py config; only its `data` section is read, with `extends`).
    Raises ConfigError for unknown keys or a missing loader/root."""
    data = read_config_file(config_path).get("data") or {}
    problems = []
    _check_keys({"data": data}, {"data": DEFAULTS["data"]}, str(config_path), problems)
    if problems:
        raise ConfigError(f"{config_path}: " + "; ".join(map(str, problems)))
    data = {**DEFAULTS["data"], **data, **({"root": data_dir} if data_dir else {})}
    if not data["loader"] or not data["root"]:
        raise ConfigError(f"{config_path}: data.loader and data.root are required (or pass --data-dir).")
    return {"data": data}


def member_scores(predictions: Predictions, num_labels: int) -> dict:
    metrics = compute_ser_metrics(predictions.predicted, predictions.labels, num_labels)
    return {"n": len(predictions.labels), **{key: metrics[key] for key in SCORE_KEYS}}


def score_run(
    run_dir, config_path, output_dir, data_dir=None, label_map=None, split=None, batch_size=8, progress=True
) -> dict:
    """Score every fold's stage-2 best model of `run_dir` and their ensemble on the corpus of `config_path`.

    Returns the content of `OUT/scores.json`: {"run", "corpus", "classes", "label_map", "split", "n", "left_out"
    ({target class: count}), "missing_classes", "folds" ({"fold<k>": scores}), "ensemble": scores}, scores =
    {"n", "ua", "wa", "macro_f1", "per_class_precision", "per_class_recall", "per_class_f1", "support",
    "confusion_matrix"} (fractions in [0, 1]; rows of the matrix = true class, in the run's class order).
    Raises CorpusError (bad label map, nothing to score), DatasetCheckError (unreadable audio: every file listed).
    """
    models, classes = run_models(run_dir)
    config = corpus_config(config_path, data_dir)
    label_map = label_map or {}
    rows, left_out, missing = target_rows(load_run_dataset(config), classes, label_map, split)
    bad = find_bad_audio(rows, progress=progress)
    if bad:
        raise DatasetCheckError([b.reason for b in bad])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    common = dict(
        files=[relative_file(a, config["data"]["root"]) for a in rows["audio"]],
        speakers=list(rows["speaker"]),
        labels=np.asarray(rows["label"]),
        classes=classes,
    )
    members = {}
    for k, best in models.items():
        model = AutoModelForFrameAlignedClassification.from_pretrained(best).to(device)
        logits = predict(model, rows, batch_size, progress=f"Scoring {fold_name(k)}").logits
        members[fold_name(k)] = Predictions(probabilities=softmax(logits), **common)
    members[ENSEMBLE] = Predictions(
        probabilities=np.mean([m.probabilities for m in members.values()], axis=0), **common
    )
    scores = {
        "run": str(run_dir),
        "corpus": {
            "config": str(config_path),
            "loader": config["data"]["loader"],
            "root": str(config["data"]["root"]),
        },
        "classes": classes,
        "label_map": label_map,
        "split": split,
        "n": len(rows),
        "left_out": left_out,
        "missing_classes": missing,
        "folds": {name: member_scores(p, len(classes)) for name, p in members.items() if name != ENSEMBLE},
        ENSEMBLE: member_scores(members[ENSEMBLE], len(classes)),
    }
    write_outputs(Path(output_dir), scores, members)
    return scores


def write_outputs(output_dir: Path, scores: dict, members: dict[str, Predictions]):
    names = list(members)
    n = len(members[ENSEMBLE].files)
    long = Predictions(
        files=members[ENSEMBLE].files * len(names),
        speakers=members[ENSEMBLE].speakers * len(names),
        labels=np.concatenate([members[name].labels for name in names]),
        probabilities=np.concatenate([members[name].probabilities for name in names]),
        classes=members[ENSEMBLE].classes,
        extra={"model": [name for name in names for _ in range(n)]},
    )
    atomic_write_text(output_dir / "predictions.csv", predictions_csv(long))
    atomic_write_json(output_dir / "scores.json", scores)
    atomic_write_text(output_dir / "scores.md", scores_markdown(scores))


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def scores_markdown(scores: dict) -> str:
    """scores.md: one row per fold model and the ensemble (UA, WA, macro-F1, per-class F1 in %), what was left
    out, the run classes the corpus lacks, and the ensemble's confusion matrix."""
    classes = scores["classes"]
    lines = [
        f"# Scores of `{scores['run']}` on `{scores['corpus']['config']}`",
        "",
        f"- Corpus: `{scores['corpus']['loader']}` at `{scores['corpus']['root']}`"
        + (f", split `{scores['split']}`" if scores["split"] else "")
        + f"; {scores['n']} utterances scored",
        f"- Label map: {', '.join(f'{a} → {b}' for a, b in scores['label_map'].items()) or 'none'}",
        f"- Left out (no run class): {', '.join(f'{k} ({v})' for k, v in scores['left_out'].items()) or 'none'}",
        f"- Run classes absent from the corpus: {', '.join(scores['missing_classes']) or 'none'} (not scored: "
        "null per-class values, left out of UA and macro-F1)",
        "- Ensemble: mean of the fold models' class probabilities",
        "",
        "| Model | n | UA (%) | WA (%) | Macro-F1 (%) | " + " | ".join(f"F1 {c} (%)" for c in classes) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(classes),
    ]
    for name, s in [*scores["folds"].items(), (ENSEMBLE, scores[ENSEMBLE])]:
        cells = [
            name if name != ENSEMBLE else f"**{ENSEMBLE}**",
            str(s["n"]),
            _percent(s["ua"]),
            _percent(s["wa"]),
            _percent(s["macro_f1"]),
            *map(_percent, s["per_class_f1"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Ensemble confusion matrix (rows: true, columns: predicted):",
        "",
        "| true \\ predicted | " + " | ".join(classes) + " |",
        "|---|" + "---:|" * len(classes),
    ]
    lines += [
        f"| {c} | " + " | ".join(map(str, row)) + " |" for c, row in zip(classes, scores[ENSEMBLE]["confusion_matrix"])
    ]
    return "\n".join(lines) + "\n"


__all__ = [
    "ENSEMBLE",
    "label_map_problems",
    "parse_label_map",
    "run_models",
    "score_run",
    "scores_markdown",
    "target_rows",
]
