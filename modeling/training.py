"""The cross-validated two-stage training loop behind `train.py`.

Per fold: stage 1 (attentive pooling, CE) from the backbone, best checkpoint on validation UA →
`fold<k>/stage1/best`; stage 2 (`Wav2Vec2ForFrameAlignedClassification.from_pretrained(stage1/best,
pooling="cls_attention", ...)`, CE + λ·EAL + λ·FUAL) → `fold<k>/stage2/best`; both best models are scored on the
validation and test speakers → `fold<k>/metrics.json` (written last: its existence means the fold is done).

Resume: finished folds (metrics.json) and stages (best/) are skipped; an interrupted stage restarts from its latest
complete Trainer checkpoint, with the RNG states, optimizer and scheduler it saved, so a resumed run ends with the
same results as an uninterrupted one. Seeds depend only on (seed, fold, stage).
"""

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import PartialState
from datasets import Dataset
from transformers import set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from . import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from .collator import AudioClassificationCollator, make_feature_extractor
from .configuration_frame_aligned import Wav2Vec2FrameAlignedConfig
from .corpora import load_corpus, select_speakers
from .dataset_checks import DatasetCheckError, find_bad_audio, fold_problems, label_map_problems, label_problems
from .folds import Fold, FoldError, make_folds, parse_fold_numbers, split_fold, split_summary
from .io_utils import atomic_directory, atomic_write_json, atomic_write_text, cleanup_stale_tmp, fault_point, read_json
from .metrics import compute_ser_metrics, make_compute_metrics
from .results import aggregate, finished_folds, write_results
from .run_config import config_differences, dump_config


logger = logging.getLogger(__name__)

STAGE_TITLES = {"stage1": "stage 1 (attentive pooling, CE)", "stage2": "stage 2"}
# Files a Trainer checkpoint needs to be resumed from; trainer_state.json is written last.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


class RunConfigMismatchError(ValueError):
    """The output directory holds a run made with another config."""


@dataclass
class Prediction:
    """Scores of one split: logits (N, num_labels), labels (N,), utterance embeddings (N, hidden_size)."""

    logits: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray

    def metrics(self, num_labels: int) -> dict:
        return compute_ser_metrics(self.logits.argmax(-1), self.labels, num_labels)


def longest_first(dataset: Dataset) -> list[int]:
    """Row indices by decreasing duration (ties by row): consecutive batches of similar length, little padding.

    Checkpoint selection (Trainer evaluation) and the final scores (`predict`) both batch in this order, so the
    validation UA a checkpoint was selected on is exactly the one reported, also for backbones that see padding
    (wav2vec2-base gets no attention mask).
    """
    durations = list(dataset["duration"])
    return sorted(range(len(durations)), key=lambda i: (-durations[i], i))


class StageTrainer(FrameAlignedTrainer):
    """`FrameAlignedTrainer` that evaluates whole clips (no random crop), longest first (see `longest_first`)."""

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator

    def _get_eval_sampler(self, eval_dataset):
        return longest_first(eval_dataset)

    def get_eval_dataloader(self, eval_dataset=None):
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return super().get_eval_dataloader(eval_dataset)
        finally:
            self.data_collator = train_collator

    # Fault points for the crash tests (no-ops unless FRAME_ALIGNED_SER_FAULT is set; see `io_utils.fault_point`).
    # `Trainer._save_checkpoint` writes model.safetensors, optimizer.pt + scheduler.pt, rng_state.pth, then
    # trainer_state.json: these two hooks mark the moments between those files.
    def _save_optimizer_and_scheduler(self, output_dir):
        fault_point(f"checkpoint:before-optimizer:{Path(self.args.output_dir).name}")
        super()._save_optimizer_and_scheduler(output_dir)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        fault_point(f"checkpoint:before-trainer-state:{Path(self.args.output_dir).name}")


def cpu_distributed() -> bool:
    """Launched by torchrun without GPUs: accelerate needs `cpu=True` to set up gloo data parallelism."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def stage_seed(seed: int, fold: int, stage: str) -> int:
    """A seed per (fold, stage): the same whether a stage runs straight through or resumes."""
    return seed + 1000 * fold + (0 if stage == "stage1" else 500)


# ---------------------------------------------------------------------------------------------------------------
# Data: load, subset, check
# ---------------------------------------------------------------------------------------------------------------


def load_run_dataset(config: dict) -> Dataset:
    data = config["data"]
    dataset = load_corpus(data["loader"], data["root"], **(data["loader_args"] or {}))
    if data["speakers"] is not None or data["max_per_speaker"] is not None:
        dataset = select_speakers(dataset, data["speakers"], data["max_per_speaker"])
    return dataset


def checked_dataset(
    config: dict, run_dir: Path, fold_numbers: str | None, skip_bad_audio: bool, write_reports: bool
) -> tuple[Dataset, list[Fold], list[Fold]]:
    """Load the corpus and run every check; returns (dataset, all folds, selected folds).

    Raises `DatasetCheckError` listing every problem. With `skip_bad_audio`, rows with bad audio are dropped and
    listed in `run_dir/skipped_audio.json` instead.
    """
    dataset = load_run_dataset(config)
    problems = label_problems(dataset)
    bad_audio = find_bad_audio(dataset, progress=write_reports)
    if skip_bad_audio:
        if write_reports:
            skipped = [bad.to_dict(dataset) for bad in bad_audio]
            atomic_write_json(run_dir / "skipped_audio.json", {"count": len(skipped), "skipped": skipped})
            if skipped:
                logger.warning(f"Skipping {len(skipped)} bad audio file(s); see {run_dir / 'skipped_audio.json'}.")
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
    label_names = dataset.features["label"].names
    from_run = config["stage1"]["from_run"]
    for fold in selected:
        stage1_best = run_dir / f"fold{fold.number}" / "stage1" / "best"
        if stage1_best.is_dir():
            problems += label_map_problems(stage1_best, label_names)
        elif from_run and not stage1_source(from_run, fold).is_dir():
            problems.append(f"stage1.from_run: {stage1_source(from_run, fold)} does not exist (train that run first).")
        elif from_run:
            problems += label_map_problems(stage1_source(from_run, fold), label_names)
    if problems:
        hint = "" if skip_bad_audio or not bad_audio else "Pass --skip-bad-audio to leave out the bad audio files."
        raise DatasetCheckError(problems, hint)
    return dataset, folds, selected


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------------


def initial_checkpoint(config: dict, run_dir: Path, label_names: list[str], state: PartialState) -> str:
    """What stage 1 starts from: `model.name_or_path`, or a randomly initialised backbone saved in
    `run_dir/pretrained` (seeded by `seed`, made once and reused by every fold and on resume)."""
    model = config["model"]
    if model["name_or_path"]:
        return model["name_or_path"]
    path = run_dir / "pretrained"
    if state.is_main_process and not path.is_dir():
        set_seed(config["seed"])
        backbone_config = Wav2Vec2FrameAlignedConfig(
            **model["random_init"],
            **_label_maps(label_names),
        )
        with atomic_directory(path) as tmp:
            Wav2Vec2ForFrameAlignedClassification(backbone_config).save_pretrained(tmp)
            make_feature_extractor().save_pretrained(tmp)
    state.wait_for_everyone()
    return str(path)


def _label_maps(label_names: list[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


def is_complete_checkpoint(path: Path) -> bool:
    """A Trainer checkpoint that was written to the end (a kill mid-save leaves one without trainer_state.json)."""
    if not all((path / name).is_file() for name in CHECKPOINT_FILES):
        return False
    try:
        read_json(path / "trainer_state.json")
    except ValueError:
        return False
    return True


def latest_checkpoint(stage_dir: Path, remove_incomplete: bool) -> str | None:
    """The newest complete `checkpoint-N` of a stage; incomplete ones (interrupted saves) are removed."""
    if not stage_dir.is_dir():
        return None
    checkpoints = sorted(
        (p for p in stage_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    complete = [p for p in checkpoints if is_complete_checkpoint(p)]
    if remove_incomplete:
        for path in checkpoints:
            if path not in complete:
                logger.warning(f"Removing incomplete checkpoint {path} (interrupted while saving).")
                shutil.rmtree(path, ignore_errors=True)
    return str(complete[-1]) if complete else None


# ---------------------------------------------------------------------------------------------------------------
# One stage
# ---------------------------------------------------------------------------------------------------------------


def stage_model_kwargs(config: dict, stage: str, label_names: list[str]) -> dict:
    """Config attributes `from_pretrained` sets for a stage (pooling, frozen layers, loss weights, labels)."""
    settings = config[stage]
    return {
        **(config["model"]["config_overrides"] or {}),
        **_label_maps(label_names),
        "pooling": settings["pooling"],
        "num_trainable_layers": settings["num_trainable_layers"],
        "eal_weight": settings["eal_weight"],
        "fual_weight": settings["fual_weight"],
        "eal_margin": settings["eal_margin"],
        "fual_detach_target": settings["fual_detach_target"],
    }


def training_arguments(config: dict, stage: str, fold: Fold, output_dir: Path) -> FrameAlignedTrainingArguments:
    settings, training = config[stage], config["training"]
    seed = stage_seed(config["seed"], fold.number, stage)
    return FrameAlignedTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings["epochs"],
        per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=settings["eval_batch_size"] or settings["batch_size"],
        gradient_accumulation_steps=settings["gradient_accumulation_steps"],
        learning_rate=settings["backbone_learning_rate"],
        backbone_learning_rate=settings["backbone_learning_rate"],
        pooling_learning_rate=settings["pooling_learning_rate"],
        classifier_learning_rate=settings["classifier_learning_rate"],
        weight_decay=settings["weight_decay"],
        warmup_steps=settings["warmup_ratio"],  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=settings["lr_scheduler_type"],
        eval_strategy="epoch",
        save_strategy="epoch",
        # The best checkpoint (on validation UA) is found from `state.best_global_step` after training, not with
        # load_best_model_at_end: its stored path goes stale when a run directory is moved between runs.
        metric_for_best_model="ua",
        greater_is_better=True,
        save_total_limit=training["save_total_limit"],
        logging_strategy="steps",
        logging_steps=training["logging_steps"],
        report_to="none",
        seed=seed,
        data_seed=seed,
        full_determinism=training["full_determinism"],
        remove_unused_columns=False,  # the collator needs the `audio` column
        train_sampling_strategy="group_by_length",
        length_column_name="duration",
        dataloader_num_workers=training["dataloader_num_workers"],
        dataloader_pin_memory=torch.cuda.is_available(),
        bf16=training["bf16"],
        fp16=training["fp16"],
        activation_checkpointing=training["activation_checkpointing"],
        disable_tqdm=False,
        use_cpu=cpu_distributed(),
    )


def train_stage(
    stage: str,
    fold: Fold,
    splits,
    init_path: str,
    config: dict,
    fold_dir: Path,
    label_names: list[str],
    state: PartialState,
    callbacks: list | None = None,
) -> Path:
    """Train one stage of one fold unless `fold_dir/<stage>/best` exists; returns that best directory."""
    stage_dir = fold_dir / stage
    best_dir = stage_dir / "best"
    if best_dir.is_dir():
        _log(state, f"Fold {fold.number}: {STAGE_TITLES[stage]} already finished ({best_dir}), skipping.")
        return best_dir
    if stage == "stage1" and config["stage1"]["from_run"]:
        return reuse_stage1(fold, fold_dir, config["stage1"]["from_run"], state)
    if state.is_main_process:
        cleanup_stale_tmp(stage_dir)
    resume_from = latest_checkpoint(stage_dir, remove_incomplete=state.is_main_process)
    state.wait_for_everyone()
    settings = config[stage]
    losses = "CE"
    if settings["pooling"] == "cls_attention":
        losses += f" + {settings['eal_weight']}·EAL + {settings['fual_weight']}·FUAL"
    _log(
        state,
        f"Fold {fold.number}: {STAGE_TITLES[stage]} · {settings['pooling']} pooling · {losses} · {fold.describe()}"
        + (f" · resuming from {resume_from}" if resume_from else ""),
    )

    set_seed(stage_seed(config["seed"], fold.number, stage))  # the new head's initialisation
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(
        init_path, **stage_model_kwargs(config, stage, label_names)
    )
    feature_extractor = make_feature_extractor()
    args = training_arguments(config, stage, fold, stage_dir.resolve())
    if settings["cache_frozen_prefix"] and model.num_frozen_layers > 0:
        trainer = cached_stage_trainer(model, args, splits, settings, feature_extractor, stage_dir, state)
    else:
        trainer = StageTrainer(
            model=model,
            args=args,
            train_dataset=splits["train"],
            eval_dataset=splits["validation"],
            data_collator=AudioClassificationCollator(
                feature_extractor, settings["max_length_seconds"], random_crop=True
            ),
            eval_data_collator=AudioClassificationCollator(feature_extractor),
            processing_class=feature_extractor,
        )
    trainer.compute_metrics = make_compute_metrics(len(label_names))
    for callback in callbacks or []:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume_from)
    best_checkpoint = stage_dir / f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.best_global_step}"
    if state.is_main_process:
        with atomic_directory(best_dir) as tmp:
            Wav2Vec2ForFrameAlignedClassification.from_pretrained(best_checkpoint).save_pretrained(tmp)
            feature_extractor.save_pretrained(tmp)
        fault_point(f"best:written:{stage}")
    state.wait_for_everyone()
    _log(
        state,
        f"Fold {fold.number}: {STAGE_TITLES[stage]} done, best validation UA {trainer.state.best_metric:.4f} "
        f"({best_checkpoint.name}) → {best_dir}",
    )
    return best_dir


def cached_stage_trainer(model, args, splits, settings: dict, feature_extractor, stage_dir: Path, state):
    """A trainer for stage 2 from the frozen prefix's cached output (`stage2.cache_frozen_prefix: true`).

    The training crop is frozen into the cache (the start of each clip, not a random window). Validation batches
    are the same longest-first batches as the uncached evaluation and the final scoring.
    """
    from .frozen_prefix import FrozenPrefixCollator, FrozenPrefixModel, FrozenPrefixTrainer, build_prefix_cache
    from .sampling import chunk

    model.freeze_for_training()
    model.to(args.device)
    dtype = getattr(torch, settings["prefix_cache_dtype"])
    root = stage_dir.resolve() / "prefix_cache" if settings["prefix_cache_on_disk"] else None
    train_collator = AudioClassificationCollator(feature_extractor, settings["max_length_seconds"], random_crop=False)
    validation = splits["validation"]
    with state.main_process_first():  # on disk: the main process builds the cache, the others load it
        train_cache = build_prefix_cache(
            model, splits["train"], train_collator, batch_size=args.per_device_train_batch_size, dtype=dtype,
            cache_dir=root and root / "train", seed=args.seed,
        )
        validation_cache = build_prefix_cache(
            model, validation, AudioClassificationCollator(feature_extractor),
            batch_size=args.per_device_eval_batch_size, dtype=dtype, cache_dir=root and root / "validation",
            batches=chunk(longest_first(validation), args.per_device_eval_batch_size),
        )
    return FrozenPrefixTrainer(
        model=FrozenPrefixModel(model),
        args=args,
        train_dataset=train_cache,
        eval_dataset=validation_cache,
        data_collator=FrozenPrefixCollator(),
        processing_class=feature_extractor,
    )


def stage1_source(from_run: str | Path, fold: Fold) -> Path:
    return Path(from_run) / f"fold{fold.number}" / "stage1" / "best"


def reuse_stage1(fold: Fold, fold_dir: Path, from_run: str, state: PartialState) -> Path:
    """Copy `from_run`'s stage-1 best model of this fold (hard links where possible) instead of training."""
    source, best_dir = stage1_source(from_run, fold), fold_dir / "stage1" / "best"
    _log(state, f"Fold {fold.number}: stage 1 reused from {source}.")
    if state.is_main_process:
        with atomic_directory(best_dir) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
    state.wait_for_everyone()
    return best_dir


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


# ---------------------------------------------------------------------------------------------------------------
# Scoring a best checkpoint
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: Wav2Vec2ForFrameAlignedClassification, dataset: Dataset, batch_size: int) -> Prediction:
    """Logits, labels and utterance embeddings of every row of `dataset`, in row order (whole clips, batched
    longest first exactly as the Trainer's evaluation)."""
    collator = AudioClassificationCollator(make_feature_extractor())
    model.eval()
    order = longest_first(dataset)
    logits, embeddings = [None] * len(order), [None] * len(order)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = collator([dataset[i] for i in rows])
        batch.pop("labels", None)
        batch = {key: value.to(model.device) for key, value in batch.items()}
        output = model(**batch)
        for j, row in enumerate(rows):
            logits[row] = output.logits[j].float().cpu().numpy()
            embeddings[row] = output.utterance_embedding[j].float().cpu().numpy()
    return Prediction(np.stack(logits), np.asarray(list(dataset["label"])), np.stack(embeddings))


def score_checkpoint(best_dir: Path, splits, batch_size: int) -> dict[str, Prediction]:
    """Predictions of a saved best model on the validation and test splits."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(best_dir).to(device)
    return {split: predict(model, splits[split], batch_size) for split in ("validation", "test")}


def _save_npz(path: Path, **arrays):
    """np.savez to a temporary file, then rename (a reader never sees a half-written file)."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)


def fold_metrics(fold: Fold, splits, best_dirs: dict[str, Path], run_dir: Path, config: dict, num_labels: int) -> dict:
    """Score both stages' best models; save the stage-2 test embeddings (for t-SNE); the fold's metrics.json."""
    scores, predictions = {}, {}
    for stage, best_dir in best_dirs.items():
        batch_size = config[stage]["eval_batch_size"] or config[stage]["batch_size"]
        predictions[stage] = score_checkpoint(best_dir, splits, batch_size)
        scores[stage] = {split: prediction.metrics(num_labels) for split, prediction in predictions[stage].items()}
    test = predictions["stage2"]["test"]
    _save_npz(
        run_dir / f"fold{fold.number}" / "test_predictions.npz",
        embeddings=test.embeddings,
        labels=test.labels,
        predictions=test.logits.argmax(-1),
    )
    fault_point(f"scoring:after-predictions:fold{fold.number}")

    def summary(metrics: dict, keep_matrix: bool) -> dict:
        keys = ("ua", "wa", "per_class_recall", "confusion_matrix") if keep_matrix else ("ua", "wa")
        return {key: metrics[key] for key in keys}

    relative = {stage: str(best_dir.relative_to(run_dir)) for stage, best_dir in best_dirs.items()}
    return {
        "validation": summary(scores["stage2"]["validation"], False),
        "test": summary(scores["stage2"]["test"], True),
        "checkpoint": relative["stage2"],
        "speakers": {split: list(fold.speakers(split)) for split in ("train", "validation", "test")},
        "num_examples": {split: len(splits[split]) for split in ("train", "validation", "test")},
        "stage1": {
            "validation": summary(scores["stage1"]["validation"], False),
            "test": summary(scores["stage1"]["test"], True),
            "checkpoint": relative["stage1"],
        },
    }


# ---------------------------------------------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------------------------------------------


def _log(state: PartialState, message: str):
    if state.is_main_process:
        logger.info(message)


def prepare_run_dir(config: dict, run_dir: Path, state: PartialState):
    """Record the resolved config; refuse to mix two configs in one output directory."""
    config_path = run_dir / "config.yaml"
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
    if state.is_main_process:
        cleanup_stale_tmp(run_dir)
    state.wait_for_everyone()


def run_fold(
    fold: Fold,
    dataset: Dataset,
    config: dict,
    run_dir: Path,
    init_path: str,
    state: PartialState,
    callbacks: list | None = None,
) -> dict:
    """Both stages of one fold and its scores; skipped when `fold<k>/metrics.json` exists."""
    fold_dir = run_dir / f"fold{fold.number}"
    metrics_path = fold_dir / "metrics.json"
    if metrics_path.is_file():
        _log(state, f"Fold {fold.number}: finished earlier ({metrics_path}), skipping.")
        return read_json(metrics_path)
    label_names = dataset.features["label"].names
    splits = split_fold(dataset, fold)
    if state.is_main_process:
        cleanup_stale_tmp(fold_dir)
        atomic_write_json(fold_dir / "split.json", split_summary(fold, splits))
    best_dirs = {}
    previous = init_path
    for stage in ("stage1", "stage2"):
        best_dirs[stage] = train_stage(
            stage, fold, splits, str(previous), config, fold_dir, label_names, state, callbacks
        )
        previous = best_dirs[stage]
    if state.is_main_process:
        _log(state, f"Fold {fold.number}: scoring the best checkpoints on validation and test.")
        metrics = fold_metrics(fold, splits, best_dirs, run_dir, config, len(label_names))
        atomic_write_json(metrics_path, metrics)
    state.wait_for_everyone()
    return read_json(metrics_path)


def tsne_panels(run_dir: Path, fold_numbers: list[int]) -> list:
    panels = []
    for k in fold_numbers:
        path = run_dir / f"fold{k}" / "test_predictions.npz"
        if path.is_file():
            with np.load(path) as arrays:
                panels.append((f"fold {k}", arrays["embeddings"], arrays["labels"]))
    return panels


def run_experiment(
    config: dict,
    output_dir: str | Path,
    folds: str | None = None,
    skip_bad_audio: bool = False,
    callbacks: list | None = None,
) -> dict:
    """Train and evaluate every selected fold (resuming what an earlier run left), then write the results.

    Args:
        config: a resolved config (`modeling.run_config.resolve_config`).
        output_dir: the run directory (see the README for its layout).
        folds: `"1,3"` to run a subset of the folds (1-based); `None` runs all.
        skip_bad_audio: drop unreadable/missing/empty audio instead of failing (report: skipped_audio.json).
        callbacks: extra `TrainerCallback`s for every stage's Trainer (e.g. early stopping, experiment trackers).
    Returns:
        The content of `results.json` (every finished fold of this run directory).
    """
    state = PartialState(cpu=cpu_distributed())
    run_dir = Path(output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_run_dir(config, run_dir, state)
    dataset, all_folds, selected = checked_dataset(config, run_dir, folds, skip_bad_audio, state.is_main_process)
    label_names = dataset.features["label"].names
    _log(
        state,
        f"{len(dataset)} utterances, {len(label_names)} classes {label_names}, {len(all_folds)} folds "
        f"({config['data']['folds']}); running folds {[fold.number for fold in selected]}.",
    )
    init_path = initial_checkpoint(config, run_dir, label_names, state)
    for fold in selected:
        run_fold(fold, dataset, config, run_dir, init_path, state, callbacks)

    results = aggregate(finished_folds(run_dir, len(all_folds)), config, label_names, len(all_folds))
    if state.is_main_process:
        write_results(run_dir, results, tsne_panels(run_dir, results["folds_evaluated"]))
    state.wait_for_everyone()
    return results


__all__ = [
    "Prediction",
    "RunConfigMismatchError",
    "StageTrainer",
    "checked_dataset",
    "initial_checkpoint",
    "latest_checkpoint",
    "predict",
    "run_experiment",
    "run_fold",
    "stage_seed",
    "train_stage",
]
