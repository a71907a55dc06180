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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification
from ..data import CorpusError
from ..data.checks import DatasetCheckError, find_bad_audio
from ..metrics import compute_ser_metrics
from ..metrics.predictions import Predictions, predictions_csv, read_predictions, relative_file
from ..prediction_fields import calibration_temperature, softmax
from ..rundir.atomic import atomic_write_json, atomic_write_text
from ..rundir.reader import FinishedRun, fold_name
from ..training.experiment import load_run_dataset
from ..training.run_config import DEFAULTS, ConfigError, _check_keys, read_config_file
from ..training.scoring import PER_CLASS, predict
from .breakdowns import breakdown_table, breakdowns, shared_speakers, speaker_dependent_note
from .calibration import calibration_table, fit_temperature, plot_reliability, probability_scores
from .robustness import delta_scores, perturbed_copy, robustness_markdown, temporary_folder


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


def member_scores(predictions: Predictions, num_labels: int, genders: list[str] | None = None) -> dict:
    """Scores of one model (or the ensemble), with per-speaker and per-gender breakdowns."""
    metrics = compute_ser_metrics(predictions.predicted, predictions.labels, num_labels)
    groups = {"speaker": predictions.speakers, **({"gender": genders} if genders is not None else {})}
    return {
        "n": len(predictions.labels),
        **{key: metrics[key] for key in SCORE_KEYS},
        "breakdowns": breakdowns(predictions.labels, predictions.predicted, groups, num_labels),
    }


def score_run(
    run_dir,
    config_path,
    output_dir,
    data_dir=None,
    label_map=None,
    split=None,
    batch_size=8,
    progress=True,
    calibrated=True,
    perturbations=None,
    perturb_seed=0,
    ensemble_calibration=None,
) -> dict:
    """Score every fold's stage-2 best model of `run_dir` and their ensemble on the corpus of `config_path`.

    Returns the content of `OUT/scores.json`: {"run", "corpus", "classes", "label_map", "split", "n", "left_out"
    ({target class: count}), "missing_classes", "folds" ({"fold<k>": scores}), "ensemble": scores}, scores =
    {"n", "ua", "wa", "macro_f1", "per_class_precision", "per_class_recall", "per_class_f1", "support",
    "confusion_matrix"} (fractions in [0, 1]; rows of the matrix = true class, in the run's class order).
    Probabilities are softmax(logits / T) with each fold model's calibration temperature (`calibrated=False`: T = 1);
    the ensemble averages them. "calibration": per model and for the ensemble, ECE (15 bins) and Brier before (T = 1)
    and after, on this corpus; OUT/reliability.png: the ensemble's reliability diagram. `perturbations` (parsed
    `Perturbation`s): "perturbations" = {spec: {"measured", "models": {fold<k>/ensemble: {"ua", "macro_f1",
    "delta_ua", "delta_macro_f1"}}}}, every model on each perturbed copy (seeded by `perturb_seed`).
    `ensemble_calibration`: a corpus config whose utterances no fold model trained or validated on (same label
    map): the ensemble gets a temperature of its own, fitted there on the log of its mean probabilities, and its
    probabilities become softmax(log p̄ / T_ensemble) (calibrated as an ensemble).
    Raises CorpusError (bad label map, nothing to score), DatasetCheckError (unreadable audio: every file listed).
    """
    models, classes = run_models(run_dir)
    config = corpus_config(config_path, data_dir)
    label_map = label_map or {}
    rows, left_out, missing = target_rows(load_run_dataset(config), classes, label_map, split)
    bad = find_bad_audio(rows, progress=progress)
    if bad:
        raise DatasetCheckError([b.reason for b in bad])
    common = dict(
        files=corpus_files(rows, config),
        speakers=list(rows["speaker"]),
        labels=np.asarray(rows["label"]),
        classes=classes,
    )
    genders = list(rows["gender"]) if "gender" in rows.column_names else None
    perturbations = perturbations or []
    with temporary_folder(output_dir) as folder:
        held_out = None if ensemble_calibration is None else (run_dir, ensemble_calibration, classes, label_map)
        variants, measured = scored_variants(rows, perturbations, perturb_seed, Path(folder), held_out)
        logits, temperatures = variant_logits(models, variants, batch_size, calibrated)
    members, raw, calibration = clean_members(logits[CLEAN], temperatures, common)
    if ensemble_calibration is not None:
        ensemble_temperature(members, calibration, raw[ENSEMBLE], logits[HELD_OUT], temperatures, variants[HELD_OUT])
        calibration[ENSEMBLE]["fitted_on"] = str(ensemble_calibration)
    scores = {
        "run": str(run_dir),
        "corpus": {"config": str(config_path), **{key: str(config["data"][key]) for key in ("loader", "root")}},
        "classes": classes,
        "label_map": label_map,
        "split": split,
        "n": len(rows),
        "left_out": left_out,
        "missing_classes": missing,
        "folds": {name: member_scores(p, len(classes), genders) for name, p in members.items() if name != ENSEMBLE},
        ENSEMBLE: member_scores(members[ENSEMBLE], len(classes), genders),
        "calibrated": calibrated,
        "calibration": calibration,
    }
    scores["not_held_out"] = not_held_out(run_dir, config, common["files"])  # reads the run's files once: `same`
    scores["speaker_dependent"] = run_speaker_overlap(run_dir, config, rows, same=bool(scores["not_held_out"]))
    if perturbations:
        scores["perturbations"] = perturbation_scores(scores, logits, temperatures, measured, common["labels"])
        scores["perturb_seed"] = perturb_seed
    write_outputs(Path(output_dir), scores, members)
    ensemble = members[ENSEMBLE]
    plot_reliability(raw[ENSEMBLE], ensemble.probabilities, ensemble.labels, Path(output_dir) / "reliability.png")
    return scores


CLEAN = "clean"
HELD_OUT = "ensemble-calibration"


def scored_variants(rows: Dataset, perturbations: list, seed: int, folder: Path, held_out: tuple | None):
    """({variant: rows}: the clean rows, the ensemble's calibration rows (`held_out`: arguments of
    `held_out_rows`), each perturbed copy written under `folder`; {perturbation spec: measured})."""
    variants, measured = {CLEAN: rows}, {}
    if held_out is not None:
        variants[HELD_OUT] = held_out_rows(*held_out)
    for i, perturbation in enumerate(perturbations):
        variants[perturbation.spec], measured[perturbation.spec] = perturbed_copy(
            rows, perturbation, seed, folder / str(i)
        )
    return variants, measured


def held_out_rows(run_dir, config_path, classes: list[str], label_map: dict) -> Dataset:
    """The rows of the ensemble's calibration corpus. Raises CorpusError when a fold model trained or validated on
    one of its speakers (same loader and root as the run): the temperature would be fitted on seen data."""
    config = corpus_config(config_path)
    rows, _, _ = target_rows(load_run_dataset(config), classes, label_map, None)
    seen = run_speaker_overlap(run_dir, config, rows)
    if seen:
        raise CorpusError(
            f"--ensemble-calibration {config_path}: fold models trained or validated on its speakers ({seen}); "
            "calibrate the ensemble on utterances none of them saw."
        )
    return rows


def ensemble_temperature(members, calibration, raw_ensemble, held_out_logits, temperatures, held_out) -> None:
    """Fit T_ensemble on the held-out rows (log of the members' mean calibrated probabilities) and apply it to the
    ensemble's probabilities in `members` and its entry of `calibration` (before: the uncalibrated mean), in
    place."""
    mean = np.mean([softmax(held_out_logits[name], temperatures[name]) for name in held_out_logits], axis=0)
    t = fit_temperature(np.log(np.clip(mean, 1e-12, None)), np.asarray(held_out["label"]))
    before = members[ENSEMBLE].probabilities
    after = softmax(np.log(np.clip(before, 1e-12, None)), t)
    members[ENSEMBLE] = replace(members[ENSEMBLE], probabilities=after)
    calibration[ENSEMBLE] = {"temperature": t, **probability_scores(raw_ensemble, after, members[ENSEMBLE].labels)}


def recorded_files(run_dir) -> set[str]:
    """The corpus-relative files of the run's folds: every split's, as `fold<k>/split.json` lists them, or (runs from
    before that list) those its finished folds validated and tested on, as their predictions CSVs name them."""
    run, files = FinishedRun(run_dir), set()
    for k in run.finished_folds():
        files.update(*(part.get("files") or [] for part in (run.split(k) or {}).values() if isinstance(part, dict)))
        paths = [run.layout.predictions(k, split) for split in ("validation", "test")]
        files.update(*(read_predictions(path).files for path in paths if path.is_file()))
    return files


def is_run_corpus(run_dir, results: dict, config: dict, files=()) -> bool:
    """Whether `config`'s corpus is the one the run trained on (as its results.json records it): the same loader and
    the same root folder (however spelled) or Hub id; or, wherever it lies (a copy, another loader), at least half
    of the scored `files` (corpus-relative) are files of the run's folds (`recorded_files`)."""
    data = (results.get("config") or {}).get("data") or {}
    ours, theirs = str(data.get("root")), str(config["data"]["root"])
    same_root = ours == theirs or (os.path.exists(ours) and os.path.realpath(ours) == os.path.realpath(theirs))
    if data.get("loader") == config["data"]["loader"] and same_root:
        return True
    return bool(files) and 2 * len(set(files) & recorded_files(run_dir)) >= len(set(files))


def not_held_out(run_dir, config: dict, files=()) -> str:
    """The warning for scoring a run on its own training corpus, or a copy of it ("" for another corpus): its fold
    models trained, validated or were tested on these utterances, so the scores are not new held-out scores."""
    try:
        results = FinishedRun(run_dir).results()
    except ValueError:
        return ""
    if not is_run_corpus(run_dir, results, config, files):
        return ""
    return (
        f"not held-out: {config['data']['loader']} at {config['data']['root']} is the corpus the run was trained on "
        "(or a copy: its files are the run's); its fold models trained, validated or were tested on these utterances, "
        "so these are not new held-out scores (scores.json's speaker_dependent: the folds that saw these speakers)."
    )


def run_speaker_overlap(run_dir, config: dict, rows: Dataset, same: bool | None = None) -> dict[str, list[str]]:
    """{fold<k>: scored speakers that fold's model trained or validated on}, when the scored corpus is the run's own
    (`same`, else `is_run_corpus`), plus the run's speaker-dependent folds (results.json); empty when independent."""
    try:
        results = FinishedRun(run_dir).results()
    except ValueError:
        return {}
    shared = {fold_name(k): s for k, s in shared_speakers(results.get("folds") or {}).items()}
    same = is_run_corpus(run_dir, results, config, corpus_files(rows, config)) if same is None else same
    scored = set(rows["speaker"]) - {""}
    for k, fold in (results.get("folds") or {}).items() if same else []:
        speakers = fold.get("speakers") or {}
        seen = (set(speakers.get("train") or []) | set(speakers.get("validation") or [])) & scored
        if seen:
            shared[fold_name(k)] = sorted(seen | set(shared.get(fold_name(k), [])))
    return shared


def corpus_files(rows: Dataset, config: dict) -> list[str]:
    """The rows' audio files relative to the corpus root (as predictions CSVs name them)."""
    return [relative_file(a, config["data"]["root"]) for a in rows["audio"]]


def clean_members(logits: dict, temperatures: dict, common: dict):
    """({fold<k>/ensemble: Predictions (calibrated)}, {same: uncalibrated probabilities}, {same: ECE / Brier before
    and after}): the ensemble averages the members' calibrated probabilities."""
    members, raw = {}, {}
    for name, values in logits.items():
        raw[name] = softmax(values)
        members[name] = Predictions(probabilities=softmax(values, temperatures[name]), **common)
    raw[ENSEMBLE] = np.mean(list(raw.values()), axis=0)
    members[ENSEMBLE] = Predictions(
        probabilities=np.mean([m.probabilities for m in members.values()], axis=0), **common
    )
    calibration = {
        name: {"temperature": temperatures.get(name), **probability_scores(raw[name], p.probabilities, p.labels)}
        for name, p in members.items()
    }
    return members, raw, calibration


def variant_logits(models: dict, variants: dict, batch_size: int, calibrated: bool):
    """({variant: {fold<k>: (N, C) logits}}, {fold<k>: temperature}): each fold model loaded once, run on every
    variant (the clean rows and each perturbed copy)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    logits, temperatures = {name: {} for name in variants}, {}
    for k, best in models.items():
        model = AutoModelForFrameAlignedClassification.from_pretrained(best).to(device)
        temperatures[fold_name(k)] = calibration_temperature(model.config, calibrated)
        for variant, rows in variants.items():
            title = f"Scoring {fold_name(k)}" + ("" if variant == CLEAN else f" ({variant})")
            logits[variant][fold_name(k)] = predict(model, rows, batch_size, progress=title).logits
    return logits, temperatures


def perturbation_scores(scores: dict, logits: dict, temperatures: dict, measured: dict, labels) -> dict:
    """{spec: {"measured", "models": {fold<k>/ensemble: {"ua", "macro_f1", "delta_ua", "delta_macro_f1"}}}}."""
    num_labels = len(scores["classes"])
    out = {}
    for spec in measured:
        probabilities = {name: softmax(values, temperatures[name]) for name, values in logits[spec].items()}
        probabilities[ENSEMBLE] = np.mean(list(probabilities.values()), axis=0)
        clean = {**scores["folds"], ENSEMBLE: scores[ENSEMBLE]}
        out[spec] = {
            "measured": measured[spec],
            "models": {
                name: delta_scores(clean[name], p.argmax(axis=1), labels, num_labels)
                for name, p in probabilities.items()
            },
        }
    return out


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
        *([speaker_dependent_note(scores["speaker_dependent"])] if scores.get("speaker_dependent") else []),
        *([f"- **Warning**: {scores['not_held_out']}"] if scores.get("not_held_out") else []),
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
    if scores.get("calibration"):
        lines += [
            "",
            "Calibration on this corpus (T: each fold model's temperature, fitted on its validation split; the "
            "ensemble averages the calibrated probabilities, then takes its own T where --ensemble-calibration gave "
            "held-out utterances; before = T = 1"
            + ("" if scores.get("calibrated", True) else "; --no-calibration: after = before")
            + "):",
            "",
            calibration_table(scores["calibration"]),
            "",
            "![Reliability diagram of the ensemble](reliability.png)",
        ]
    if scores.get("perturbations"):
        names = [*scores["folds"], ENSEMBLE]
        lines += [
            "",
            f"Robustness (seed {scores['perturb_seed']}; Δ = perturbed − clean, percentage points; "
            "docs/evaluation_breakdowns_calibration.md describes each effect):",
            "",
            robustness_markdown(scores["perturbations"], names),
        ]
    breakdown = scores[ENSEMBLE].get("breakdowns")
    if breakdown:
        lines += [
            "",
            f"Ensemble per gender and per speaker (95 % percentile bootstrap intervals, {breakdown['resamples']} "
            f"resamples, seed {breakdown['seed']}; groups under {breakdown['min_group_size']} utterances get none; "
            "each fold model's breakdown is in scores.json):",
            "",
            breakdown_table(breakdown),
        ]
    return "\n".join(lines) + "\n"


__all__ = [
    "ENSEMBLE",
    "label_map_problems",
    "not_held_out",
    "parse_label_map",
    "run_models",
    "score_run",
    "scores_markdown",
    "target_rows",
]
