"""The cross-validated two-stage training loop behind `train.py`: check the data, then every selected fold.

Per fold (`run_fold`): stage 1 → `fold<k>/stage1/best`, stage 2 → `fold<k>/stage2/best` (`stage.py`); both best
models are scored on the validation and test speakers → `fold<k>/metrics.json` (`scoring.py`; written last: its
existence means the fold is done); then `results.json` and the figures over every finished fold (`results.py`).
The run directory's layout is `run_dir.py`'s.

Resume: finished folds (metrics.json) and stages (best/) are skipped; an interrupted stage restarts from its latest
complete Trainer checkpoint (`checkpoints.py`), with the RNG states, optimizer and scheduler it saved, so a resumed
run ends with the same results as an uninterrupted one. Seeds depend only on (seed, fold, stage).
"""

import logging
import os
from pathlib import Path

import yaml
from accelerate import PartialState
from datasets import Dataset

from ..data import load_corpus, select_speakers
from ..data.catalog import accepts_distribution
from ..data.checks import DatasetCheckError, find_bad_audio, fold_problems, label_map_problems, label_problems
from ..data.folds import Fold, FoldError, make_folds, parse_fold_numbers, split_fold, split_summary
from ..rundir.atomic import atomic_write_json, atomic_write_text, cleanup_stale_tmp
from ..rundir.layout import STAGES, RunDir
from ..rundir.locks import fold_lock, run_lock
from ..rundir.reader import FinishedRun
from ..trainer.loss_options import dataset_loss_problems
from .checkpoints import ModelSettingsError, initial_checkpoint
from .config_checks import raise_on_setup_problems
from .results import aggregate, finished_folds, tsne_panels, write_results
from .run_config import config_differences, dump_config
from .scoring import fold_metrics
from .stage import cpu_distributed, model_problems, train_stage


logger = logging.getLogger(__name__)


class RunConfigMismatchError(ValueError):
    """The output directory holds a run made with another config."""


def load_run_dataset(config: dict) -> Dataset:
    data = config["data"]
    loader_args = dict(data["loader_args"] or {})
    if any(config[stage].get("soft_labels") for stage in STAGES) and accepts_distribution(data["loader"]):
        loader_args.setdefault("label_distribution", True)  # the corpus's annotator votes (modeling/data/votes.py)
    dataset = load_corpus(data["loader"], data["root"], **loader_args)
    if data["speakers"] is not None or data["max_per_speaker"] is not None:
        dataset = select_speakers(dataset, data["speakers"], data["max_per_speaker"])
    return dataset


def checked_dataset(
    config: dict, run_dir: str | os.PathLike, fold_numbers: str | None, skip_bad_audio: bool, write_reports: bool
) -> tuple[Dataset, list[Fold], list[Fold]]:
    """Load the corpus and run every check; returns (dataset, all folds, selected folds).

    Raises `DatasetCheckError` listing every problem. With `skip_bad_audio`, rows with bad audio are dropped and
    listed in the run's `skipped_audio.json` instead.
    """
    run = RunDir(run_dir)
    dataset = load_run_dataset(config)
    problems = label_problems(dataset)
    bad_audio = find_bad_audio(dataset, progress=write_reports)
    if skip_bad_audio:
        if write_reports:
            skipped = [bad.to_dict(dataset) for bad in bad_audio]
            atomic_write_json(run.skipped_audio, {"count": len(skipped), "skipped": skipped})
            if skipped:
                logger.warning(f"Skipping {len(skipped)} bad audio file(s); see {run.skipped_audio}.")
        bad_rows = {bad.row for bad in bad_audio}
        dataset = dataset.select([i for i in range(len(dataset)) if i not in bad_rows])
    else:
        problems += [bad.reason for bad in bad_audio]

    folds, selected = [], []
    try:
        folds = make_folds(dataset, config["data"]["folds"], config["data"]["num_folds"])
        selected = [folds[k - 1] for k in parse_fold_numbers(fold_numbers, len(folds))]
    except FoldError as error:
        problems.append(str(error))
    problems += fold_problems(dataset, selected)
    problems += dataset_loss_problems({stage: config[stage] for stage in STAGES}, dataset)
    label_names = dataset.features["label"].names
    from_run = config["stage1"]["from_run"] and FinishedRun(config["stage1"]["from_run"])
    for fold in selected:
        stage1_best = run.best(fold.number, "stage1")
        source = from_run and from_run.best(fold.number, "stage1")
        if stage1_best.is_dir():
            problems += label_map_problems(stage1_best, label_names)
        elif from_run and not source.is_dir():
            problems.append(f"stage1.from_run: {source} does not exist (train that run first).")
        elif from_run:
            problems += label_map_problems(source, label_names)
    if problems:
        hint = "" if skip_bad_audio or not bad_audio else "Pass --skip-bad-audio to leave out the bad audio files."
        raise DatasetCheckError(problems, hint)
    return dataset, folds, selected


def _log(state: PartialState, message: str):
    if state.is_main_process:
        logger.info(message)


def prepare_run_dir(config: dict, run: RunDir, state: PartialState):
    """Record the resolved config; refuse to mix two configs in one output directory."""
    config_path = run.config
    if config_path.is_file():
        differences = config_differences(yaml.safe_load(config_path.read_text()), config)
        if differences:
            raise RunConfigMismatchError(
                f"{config_path}: this output directory holds a run with another config ("
                + "; ".join(differences)
                + "). Use a new --output-dir, or the same settings to resume."
            )
    elif state.is_main_process:
        atomic_write_text(config_path, dump_config(config))
    with run_lock(run.lock, enabled=state.is_main_process):  # not while another process writes results.json
        if state.is_main_process:
            cleanup_stale_tmp(run.path)
    state.wait_for_everyone()


def run_fold(
    fold: Fold,
    dataset: Dataset,
    config: dict,
    run: RunDir,
    init_path: str,
    state: PartialState,
    callbacks: list | None = None,
) -> dict:
    """Both stages of one fold and its scores; skipped when `fold<k>/metrics.json` exists.

    The main process holds the fold's lock (`run_lock.fold_lock`) throughout: a second process on the same fold
    raises `LockHeldError` naming the first.
    """
    if run.metrics(fold.number).is_file():
        _log(state, f"Fold {fold.number}: finished earlier ({run.metrics(fold.number)}), skipping.")
        return FinishedRun(run.path).fold_metrics(fold.number)
    with fold_lock(run.fold_lock(fold.number), fold.number, enabled=state.is_main_process):
        return _run_locked_fold(fold, dataset, config, run, init_path, state, callbacks)


def _run_locked_fold(fold, dataset, config, run, init_path, state, callbacks) -> dict:
    fold_dir, metrics_path = run.fold(fold.number), run.metrics(fold.number)
    if metrics_path.is_file():  # another process finished it while this one waited to start
        _log(state, f"Fold {fold.number}: finished by another process ({metrics_path}), skipping.")
        return FinishedRun(run.path).fold_metrics(fold.number)
    label_names = dataset.features["label"].names
    splits = split_fold(dataset, fold)
    if state.is_main_process:
        cleanup_stale_tmp(fold_dir)
        atomic_write_json(run.split(fold.number), split_summary(fold, splits))
    best_dirs = {}
    previous = init_path
    for stage in STAGES:
        best_dirs[stage] = train_stage(stage, fold, splits, str(previous), config, run, label_names, state, callbacks)
        previous = best_dirs[stage]
    if state.is_main_process:
        _log(state, f"Fold {fold.number}: scoring the best checkpoints on validation and test.")
        metrics = fold_metrics(fold, splits, best_dirs, run, config, len(label_names))
        atomic_write_json(metrics_path, metrics)
    state.wait_for_everyone()
    return FinishedRun(run.path).fold_metrics(fold.number)


def run_experiment(
    config: dict,
    output_dir: str | Path,
    folds: str | None = None,
    skip_bad_audio: bool = False,
    callbacks: list | None = None,
) -> dict:
    """Train and evaluate every selected fold (resuming what an earlier run left), then write the results.

    Args:
        config: a resolved config (`modeling.training.run_config.resolve_config`).
        output_dir: the run directory (see the README for its layout).
        folds: `"1,3"` to run a subset of the folds (1-based); `None` runs all.
        skip_bad_audio: drop unreadable/missing/empty audio instead of failing (report: skipped_audio.json).
        callbacks: extra `TrainerCallback`s for every stage's Trainer (e.g. early stopping, experiment trackers).
    Returns:
        The content of `results.json` (every finished fold of this run directory).
    """
    raise_on_setup_problems(config)  # both stages' model configs and TrainingArguments, before anything else
    state = PartialState(cpu=cpu_distributed())
    run = RunDir(output_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(config, run, state)
    dataset, all_folds, selected = checked_dataset(config, run, folds, skip_bad_audio, state.is_main_process)
    label_names = dataset.features["label"].names
    _log(
        state,
        f"{len(dataset)} utterances, {len(label_names)} classes {label_names}, {len(all_folds)} folds "
        f"({config['data']['folds']}); running folds {[fold.number for fold in selected]}.",
    )
    with run_lock(run.lock, enabled=state.is_main_process):
        init_path = initial_checkpoint(config, run, label_names, state)
    problems = model_problems(config, init_path, label_names)
    if problems:
        raise ModelSettingsError(
            f"The model settings cannot train ({init_path}):\n" + "\n".join(f"- {p}" for p in problems)
        )
    for fold in selected:
        run_fold(fold, dataset, config, run, init_path, state, callbacks)

    # Under the run's lock: whichever process (of several training other folds) finishes last sees every fold.
    with run_lock(run.lock, enabled=state.is_main_process):
        results = aggregate(finished_folds(run, len(all_folds)), config, label_names, len(all_folds))
        if state.is_main_process:
            write_results(run, results, tsne_panels(run, results["folds_evaluated"]))
    state.wait_for_everyone()
    return results


__all__ = [
    "RunConfigMismatchError",
    "checked_dataset",
    "load_run_dataset",
    "prepare_run_dir",
    "run_experiment",
    "run_fold",
]
