"""The cross-validated two-stage training loop behind `train.py`: check the data, then every selected fold.

Per fold (`run_fold`): [with `stage0.enabled`, stage 0 → `fold<k>/stage0/best`: FLEA's continued pre-training,
`stage0.py`], stage 1 → `fold<k>/stage1/best`, stage 2 → `fold<k>/stage2/best` (`stage.py`); both best
models are scored on the validation and test speakers → `fold<k>/metrics.json` (`scoring.py`; written last: its
existence means the fold is done); then `results.json` and the figures over every finished fold (`results.py`).
The run directory's layout is `run_dir.py`'s.

Resume: finished folds (metrics.json) and stages (best/) are skipped; an interrupted stage restarts from its latest
complete Trainer checkpoint (`checkpoints.py`), with the RNG states, optimizer and scheduler it saved, so a resumed
run ends with the same results as an uninterrupted one. Seeds depend only on (seed, fold, stage).
"""

import logging
import os
import time
from datetime import timedelta
from pathlib import Path

import yaml
from accelerate import PartialState
from datasets import Dataset

from ..data import load_corpus, select_speakers
from ..data.catalog import accepts_distribution
from ..data.checks import (
    BadAudio,
    DatasetCheckError,
    find_bad_audio,
    fold_problems,
    label_map_problems,
    label_problems,
)
from ..data.folds import Fold, FoldError, make_folds, parse_fold_numbers, split_fold, split_summary
from ..data.problems import CheckError, Problem
from ..metrics.predictions import relative_file
from ..rundir.atomic import atomic_write_json, atomic_write_text, cleanup_stale_tmp
from ..rundir.layout import STAGES, RunDir
from ..rundir.locks import fold_lock, run_lock
from ..rundir.reader import FinishedRun, fold_name
from ..trainer.loss_options import dataset_loss_problems
from ..trainer.trainer import FrameAlignedTrainingArguments
from .checkpoints import initial_checkpoint, model_check_path
from .config_checks import backbone_config, raise_on_setup_problems
from .results import aggregate, finished_folds, tsne_panels, write_results
from .run_config import config_differences, dump_config, origin_of, passthrough_settings
from .schema import SECTIONS, defaults
from .scoring import fold_metrics
from .stage import cpu_distributed, model_problems, train_stage
from .stage0 import stage0_data_problems, train_stage0


logger = logging.getLogger(__name__)


class RunConfigMismatchError(CheckError):
    """The output directory holds a run made with another config (a `CheckError`: found before anything runs)."""


def load_run_dataset(config: dict) -> Dataset:
    """The corpus of `config["data"]`; the stages' sections are optional (score.py passes a data section only)."""
    data = config["data"]
    loader_args = dict(data["loader_args"] or {})
    soft = any((config.get(stage) or {}).get("soft_labels") for stage in STAGES)
    if soft and accepts_distribution(data["loader"]):
        loader_args.setdefault("label_distribution", True)  # the corpus's annotator votes (modeling/data/votes.py)
    dataset = load_corpus(data["loader"], data["root"], **loader_args)
    if data["speakers"] is not None or data["max_per_speaker"] is not None:
        dataset = select_speakers(dataset, data["speakers"], data["max_per_speaker"])
    return dataset


def find_bad_audio_in_parallel(dataset: Dataset, state: PartialState | None, progress: bool, gather=None) -> list:
    """`find_bad_audio` with the decoding shared by the processes: each decodes every `num_processes`-th clip and
    the findings are gathered (`gather`: accelerate's `gather_object`), so every process gets the whole list, in row
    order, and a large corpus is decoded once, not once per process."""
    if state is None or state.num_processes <= 1:
        return find_bad_audio(dataset, progress=progress)
    from accelerate.utils import gather_object

    rows = range(state.process_index, len(dataset), state.num_processes)
    found = [
        BadAudio(rows[bad.row], bad.audio, bad.reason)
        for bad in find_bad_audio(dataset.select(rows), progress=progress)
    ]
    return sorted((gather or gather_object)(found), key=lambda bad: bad.row)


def checked_dataset(
    config: dict,
    run_dir: str | os.PathLike,
    fold_numbers: str | None,
    skip_bad_audio: bool,
    write_reports: bool,
    state: PartialState | None = None,
) -> tuple[Dataset, list[Fold], list[Fold]]:
    """Load the corpus and run every check; returns (dataset, all folds, selected folds).

    Raises `DatasetCheckError` (= `CheckError`) listing every problem, grouped by cause; then nothing is written.
    With `skip_bad_audio`, rows with bad audio are dropped and (with `write_reports`, once every check passed) listed
    in the run's `skipped_audio.json` instead. With `state` (several processes) the audio decoding is shared
    (`find_bad_audio_in_parallel`).
    """
    dataset, folds, selected, skipped = _checked_dataset(
        config, run_dir, fold_numbers, skip_bad_audio, write_reports, state
    )
    if write_reports and skip_bad_audio:
        write_skipped_audio(RunDir(run_dir), skipped)
    return dataset, folds, selected


def write_skipped_audio(run: RunDir, skipped: list[dict]):
    """`skipped_audio.json`: the bad audio files `--skip-bad-audio` left out."""
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.skipped_audio, {"count": len(skipped), "skipped": skipped})
    if skipped:
        logger.warning(f"Skipping {len(skipped)} bad audio file(s); see {run.skipped_audio}.")


def _bad_audio_problem(bad: BadAudio) -> Problem:
    """A bad file; files that fail the same way ("file does not exist") share a cause."""
    detail = bad.reason.removeprefix(f"{bad.audio}: ")
    return Problem(bad.audio, bad.reason, bad.audio, cause=detail if detail != bad.reason else None)


def _checked_dataset(config, run_dir, fold_numbers, skip_bad_audio, progress, state=None, origins=None) -> tuple:
    """`checked_dataset` without writing: (dataset, all folds, selected folds, skipped-audio report rows).
    `origins`: where the config's keys were set (`run_config.config_origins`), named in the problems they cause."""
    run = RunDir(run_dir)
    dataset = load_run_dataset(config)
    problems = label_problems(dataset, origin_of(origins or {}, "data.loader_args.labels"))
    bad_audio = find_bad_audio_in_parallel(dataset, state, progress=progress)
    skipped = []
    if skip_bad_audio:
        skipped = [bad.to_dict(dataset) for bad in bad_audio]
        bad_rows = {bad.row for bad in bad_audio}
        dataset = dataset.select([i for i in range(len(dataset)) if i not in bad_rows])
    else:
        problems += [_bad_audio_problem(bad) for bad in bad_audio]

    folds, selected = [], []
    try:
        folds = make_folds(dataset, config["data"]["folds"], config["data"]["num_folds"])
        selected = [folds[k - 1] for k in parse_fold_numbers(fold_numbers, len(folds))]
    except FoldError as error:
        problems.append(str(error))
    problems += fold_problems(dataset, selected)
    problems += dataset_loss_problems({stage: config[stage] for stage in STAGES}, dataset)
    if config["stage0"]["enabled"]:  # enough training frames for the clusters, clips long enough for a span
        problems += stage0_data_problems(config, dataset, selected, backbone_config(config)[0])
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
        raise DatasetCheckError(problems, hint=hint)
    return dataset, folds, selected, skipped


def distributed_state(config: dict) -> PartialState:
    """The run's `PartialState`, its process group created with the config's `ddp_timeout` and `ddp_backend`.

    The first `PartialState` creates the process group; the `TrainingArguments` built later for each stage cannot
    change it, so their `ddp_timeout` would be ignored (torch's default then: 10 minutes for NCCL, 30 for gloo).
    `ddp_timeout` (seconds, `TrainingArguments`' default 1800) may be set under `training:` or a stage; the process
    group has one timeout, so the larger of the two stages' values is used.
    """
    values = [passthrough_settings(config, stage) for stage in STAGES]
    timeout = max(value.get("ddp_timeout", FrameAlignedTrainingArguments.ddp_timeout) for value in values)
    kwargs = {"timeout": timedelta(seconds=timeout)}
    backends = {value["ddp_backend"] for value in values if value.get("ddp_backend")}
    if len(backends) > 1:
        raise ValueError(f"ddp_backend differs between the stages ({sorted(backends)}): set it once, under training:.")
    if backends:
        kwargs["backend"] = backends.pop()
    return PartialState(cpu=cpu_distributed(), **kwargs)


def wait_for_main_process(state: PartialState, path: Path, poll_s: float = 1.0):
    """Wait until the main process has written `path`, then synchronise.

    The other processes poll the file instead of waiting in a collective: rank-0-only work (scoring a fold, writing
    results and plots) can take longer than `ddp_timeout` on a large corpus without the process-group watchdog
    killing a job whose training has finished. If the main process fails, torchrun stops the others.
    """
    if not state.is_main_process:
        while not path.exists():
            time.sleep(poll_s)
    state.wait_for_everyone()


def _log(state: PartialState, message: str):
    if state.is_main_process:
        logger.info(message)


def check_run_dir(config: dict, run: RunDir):
    """Refuse to mix two configs in one output directory (`RunConfigMismatchError`); reads only."""
    config_path = run.config
    if config_path.is_file():
        recorded = yaml.safe_load(config_path.read_text()) or {}
        # a run recorded before a section (stage0:) or an option (model.lora) existed ran with its default: an
        # upgrade of the package must not turn the same command into "another config"
        recorded = {
            **recorded,
            **{
                name: {**value, **(recorded.get(name) or {})}
                for name, value in defaults().items()
                if name in SECTIONS and isinstance(value, dict)
            },
        }
        differences = config_differences(recorded, config)
        if differences:
            raise RunConfigMismatchError(
                f"{config_path}: this output directory holds a run with another config ("
                + "; ".join(differences)
                + "). Use a new --output-dir, or the same settings to resume."
            )


def prepare_run_dir(config: dict, run: RunDir, state: PartialState):
    """Record the resolved config (after every check passed); refuse to mix two configs in one output directory."""
    check_run_dir(config, run)
    run.path.mkdir(parents=True, exist_ok=True)
    if not run.config.is_file() and state.is_main_process:
        atomic_write_text(run.config, dump_config(config))
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
    origins: dict[str, str] | None = None,
) -> dict:
    """Both stages of one fold and its scores; skipped when `fold<k>/metrics.json` exists.

    The main process holds the fold's lock (`run_lock.fold_lock`) throughout: a second process on the same fold
    raises `LockHeldError` naming the first.
    """
    if run.metrics(fold.number).is_file():
        _log(state, f"{fold_name(fold.number)}: finished earlier ({run.metrics(fold.number)}), skipping.")
        return FinishedRun(run.path).fold_metrics(fold.number)
    with fold_lock(run.fold_lock(fold.number), fold.number, enabled=state.is_main_process):
        return _run_locked_fold(fold, dataset, config, run, init_path, state, callbacks)


def _run_locked_fold(fold, dataset, config, run, init_path, state, callbacks) -> dict:
    fold_dir, metrics_path = run.fold(fold.number), run.metrics(fold.number)
    if metrics_path.is_file():  # another process finished it while this one waited to start
        _log(state, f"{fold_name(fold.number)}: finished by another process ({metrics_path}), skipping.")
        return FinishedRun(run.path).fold_metrics(fold.number)
    label_names = dataset.features["label"].names
    splits = split_fold(dataset, fold)
    if state.is_main_process:
        cleanup_stale_tmp(fold_dir)
        summary = split_summary(fold, splits)
        for split, rows in splits.items():  # its files (corpus-relative): score.py knows a copy of the corpus by them
            summary[split]["files"] = [relative_file(audio, config["data"]["root"]) for audio in rows["audio"]]
        atomic_write_json(run.split(fold.number), summary)
    best_dirs = {}
    previous = init_path
    if config["stage0"]["enabled"]:  # FLEA's continued pre-training on the training speakers (stage0.py)
        previous = train_stage0(fold, splits, init_path, config, run, label_names, state, callbacks)
    for stage in STAGES:
        best_dirs[stage] = train_stage(stage, fold, splits, str(previous), config, run, label_names, state, callbacks)
        previous = best_dirs[stage]
    if state.is_main_process:
        _log(state, f"{fold_name(fold.number)}: scoring the best checkpoints on validation and test.")
        metrics = fold_metrics(fold, splits, best_dirs, run, config, len(label_names))
        atomic_write_json(metrics_path, metrics)
    wait_for_main_process(state, metrics_path)
    return FinishedRun(run.path).fold_metrics(fold.number)


def run_experiment(
    config: dict,
    output_dir: str | Path,
    folds: str | None = None,
    skip_bad_audio: bool = False,
    callbacks: list | None = None,
    origins: dict[str, str] | None = None,
) -> dict:
    """Train and evaluate every selected fold (resuming what an earlier run left), then write the results.

    Args:
        config: a resolved config (`modeling.training.run_config.resolve_config`).
        output_dir: the run directory (see the README for its layout).
        folds: `"1,3"` to run a subset of the folds (1-based); `None` runs all.
        skip_bad_audio: drop unreadable/missing/empty audio instead of failing (report: skipped_audio.json).
        callbacks: extra `TrainerCallback`s for every stage's Trainer (e.g. early stopping, experiment trackers).
        origins: {dotted key: where it was set} (`run_config.config_origins`: the config file of an `extends:`
            chain, a `--set` argument); the corpus checks name where a key they refuse came from (the label list).
    Returns:
        The content of `results.json` (every finished fold of this run directory).
    """
    # Every check first (config, output directory, corpus, model settings); nothing is written before they pass,
    # so a corrected command runs in the same --output-dir.
    raise_on_setup_problems(config)  # both stages' model configs and TrainingArguments
    state = distributed_state(config)
    run = RunDir(output_dir)
    check_run_dir(config, run)
    dataset, all_folds, selected, skipped = _checked_dataset(
        config, run, folds, skip_bad_audio, state.is_main_process, state, origins
    )
    label_names = dataset.features["label"].names
    with model_check_path(config, label_names) as check_path:
        problems = model_problems(config, check_path, label_names)
    if problems:
        raise CheckError(problems, source=f"the model settings ({config['model']['name_or_path'] or 'random_init'})")

    prepare_run_dir(config, run, state)
    if skip_bad_audio and state.is_main_process:
        write_skipped_audio(run, skipped)
    _log(
        state,
        f"{len(dataset)} utterances, {len(label_names)} classes {label_names}, {len(all_folds)} folds "
        f"({config['data']['folds']}); running folds {[fold.number for fold in selected]}.",
    )
    with run_lock(run.lock, enabled=state.is_main_process):
        init_path = initial_checkpoint(config, run, label_names, state)
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
    "check_run_dir",
    "checked_dataset",
    "distributed_state",
    "find_bad_audio_in_parallel",
    "load_run_dataset",
    "prepare_run_dir",
    "run_experiment",
    "run_fold",
    "wait_for_main_process",
]
