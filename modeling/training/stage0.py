"""Stage 0 of a fold (`stage0.enabled`): FLEA's continued pre-training of the backbone before stage 1 (docs/flea.md).

On the fold's training speakers only: the backbone stage 1 would start from gives every frame the K-means cluster of
its layer-`stage0.layer` embedding (`pretraining.pseudo_labels`; the centroids and ids saved under
`fold<k>/stage0/pseudo_labels/`), then learns to predict the clusters of masked spans (`pretraining.
masked_prediction`). The continued-pre-trained backbone is `fold<k>/stage0/best`, stage 1's starting point; its
config records the stage (`continued_pretraining`), which the model cards report.

Resume as the other stages: `best/` skips the stage, the pseudo labels are reused when intact (checksums), training
restarts from the newest intact `checkpoint-N` with its RNG states (the spans drawn are the same). Phase 0 of FLEA,
task-adaptive pre-training, is not run (docs/flea.md says why).
"""

import dataclasses
import logging
from pathlib import Path
from types import SimpleNamespace

from accelerate import PartialState
from transformers import TrainingArguments, set_seed

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification
from ..collator import make_feature_extractor
from ..data.folds import Fold, FoldError, split_fold
from ..data.problems import Problem
from ..pretraining.masked_prediction import (
    MaskedPredictionTrainer,
    MaskedPseudoLabelModel,
    PseudoLabelCollator,
    PseudoLabelDataset,
)
from ..pretraining.pseudo_labels import (
    PseudoLabels,
    clip_frames,
    clusters_problem,
    layer_problem,
    make_pseudo_labels,
)
from ..rundir.atomic import atomic_directory, atomic_write_json, cleanup_stale_tmp, read_json
from ..rundir.faults import fault_point
from ..rundir.integrity import checkpoint_problems, write_manifest
from ..rundir.layout import CLUSTERS_FILE, PSEUDO_LABELS_FILE, PSEUDO_LABELS_SUMMARY, STAGE0, RunDir
from ..rundir.reader import fold_name
from ..trainer.memory import release_trainer
from . import schema
from .checkpoints import latest_checkpoint, usable_best
from .run_config import passthrough_settings
from .stage import fixed_training_argument_values, stage_model_kwargs


logger = logging.getLogger(__name__)

# The config attribute of a checkpoint whose backbone went through stage 0 (read by the model cards).
RECORD_ATTRIBUTE = "continued_pretraining"
RESTORED_ATTRIBUTES = ("mask_time_prob", "mask_time_length", "num_trainable_layers")


def stage0_seed(seed: int, fold: int) -> int:
    """Stage 0's seed of a fold (stage 1's is seed + 1000·fold, stage 2's + 500)."""
    return seed + 1000 * fold + 250


def stage0_config_problems(config: dict, backbone: dict) -> list[Problem]:
    """What makes stage 0 untrainable, from the config and the backbone's config alone (empty when disabled)."""
    settings = config["stage0"]
    if not settings["enabled"]:
        return []
    problems = []
    problem = layer_problem(settings["layer"], backbone.get("num_hidden_layers", 0))
    if problem:
        problems.append(Problem("stage0.layer", problem, settings["layer"]))
    if settings["num_trainable_layers"] == 0:
        message = (
            "stage0.num_trainable_layers = 0 freezes every backbone weight (the CNN is always frozen): stage 0 would "
            "train only its projection and hand stage 1 an unchanged backbone. Set null (all layers) or >= 1."
        )
        problems.append(Problem("stage0.num_trainable_layers", message, 0))
    if config["stage1"]["from_run"]:
        message = (
            "stage0.enabled with stage1.from_run: stage 1 is copied from another run and would not start from "
            "stage 0's backbone. Disable one of them."
        )
        problems.append(Problem("stage0.enabled", message, True))
    return problems


def stage0_data_problems(config: dict, dataset, folds: list[Fold], backbone: dict | None) -> list[Problem]:
    """Per fold: at least `stage0.clusters` training frames, and no training clip shorter than a masked span
    (`mask_time_length` frames; transformers cannot draw spans in a batch of such clips). Frames are counted from
    the corpus's durations and the backbone's conv stack."""
    settings = config["stage0"]
    if not settings["enabled"] or backbone is None:
        return []
    geometry = SimpleNamespace(conv_kernel=backbone["conv_kernel"], conv_stride=backbone["conv_stride"])
    problems = []
    for fold in folds:
        try:
            train = split_fold(dataset, fold)["train"]
        except FoldError:
            continue  # reported by the fold checks
        frames = clip_frames([d or 0 for d in train["duration_s"]], geometry)
        problem = clusters_problem(settings["clusters"], int(frames.sum()))
        if problem:
            problems.append(Problem("stage0.clusters", f"{fold_name(fold.number)}: {problem}", settings["clusters"]))
        short = [audio for audio, n in zip(train["audio"], frames) if n < settings["mask_time_length"]]
        if short:
            message = (
                f"{fold_name(fold.number)}: {len(short)} training clip(s) yield fewer frames than "
                f"stage0.mask_time_length = {settings['mask_time_length']} (e.g. {short[0]}); lower it or leave those "
                "clips out."
            )
            problems.append(Problem("stage0.mask_time_length", message, settings["mask_time_length"]))
    return problems


# Where stage 0's TrainingArguments differ from the values every stage takes (`stage.fixed_training_argument_values`),
# and why (tests/training/test_stage0_arguments.py fails on any other difference).
TRAINING_ARGUMENT_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
STAGE0_OVERRIDES = {
    # no evaluation: no validation speaker's audio may be used, so there is no metric to select a checkpoint on
    # (the last epoch's backbone is kept)
    "eval_strategy": "no",
    # random batches: `PseudoLabelDataset` has no FIXED_TRAINING_ARGUMENTS["length_column_name"] column to sort by
    "train_sampling_strategy": "random",
}


def stage0_training_arguments(config: dict, fold: Fold, output_dir: Path) -> TrainingArguments:
    """Stage 0's `TrainingArguments`: `training:`'s and `stage0:`'s declared options, the values every stage takes
    (`stage.fixed_training_argument_values`: a checkpoint per epoch, ...), then the `TrainingArguments` fields set
    under `training:` (gradient accumulation, `report_to`, `run_name`, ...: they apply to every stage; the ones only
    our trainer has, `FrameAlignedTrainingArguments`', concern stages 1 and 2's loss and sampling), but for
    `STAGE0_OVERRIDES` (no evaluation, random batches)."""
    passthrough = passthrough_settings(config, None)
    run_name = f"{fold_name(fold.number)}-{STAGE0}"
    return TrainingArguments(
        **schema.training_argument_kwargs(config["training"], "training")
        | schema.training_argument_kwargs(config["stage0"], "stage0")
        | fixed_training_argument_values(config, stage0_seed(config["seed"], fold.number), output_dir)
        | {key: value for key, value in passthrough.items() if key in TRAINING_ARGUMENT_FIELDS}
        | STAGE0_OVERRIDES
        | {"run_name": f"{passthrough['run_name']}-{run_name}" if passthrough.get("run_name") else run_name}
    )


def fold_pseudo_labels(backbone, train, config: dict, fold: Fold, run: RunDir, state: PartialState) -> PseudoLabels:
    """The fold's pseudo labels: reused from `fold<k>/stage0/pseudo_labels` when intact and made for the same clips,
    else made by the main process (layer embeddings → K-means → ids) and written atomically with checksums."""
    directory, files = run.pseudo_labels(fold.number), list(train["audio"])
    if state.is_main_process and not _reusable(directory, files):
        settings = config["stage0"]
        clusters, labels = make_pseudo_labels(
            backbone, files, settings["layer"], settings["clusters"], stage0_seed(config["seed"], fold.number), 4096
        )
        summary = {
            "method": "FLEA frame-level pseudo-emotion labels (K-means: scikit-learn MiniBatchKMeans)",
            **{key: settings[key] for key in ("layer", "clusters", "mask_time_prob", "mask_time_length")},
            "clips": len(files),
            "frames": int(len(labels.ids)),
            "fitted_frames": clusters.fitted_frames,
            "inertia": clusters.inertia,
            "speakers": sorted(set(train["speaker"])),
        }
        with atomic_directory(directory) as tmp:
            clusters.save(Path(tmp) / CLUSTERS_FILE)
            labels.save(Path(tmp) / PSEUDO_LABELS_FILE)
            atomic_write_json(Path(tmp) / PSEUDO_LABELS_SUMMARY, summary)
            write_manifest(tmp)
        fault_point("stage0:pseudo-labels-written")
    state.wait_for_everyone()
    return PseudoLabels.load(directory / PSEUDO_LABELS_FILE)


def _reusable(directory: Path, files: list[str]) -> bool:
    if not (directory / PSEUDO_LABELS_FILE).is_file() or checkpoint_problems(directory):
        return False
    return PseudoLabels.load(directory / PSEUDO_LABELS_FILE).files == files


def train_stage0(fold: Fold, splits, init_path: str, config: dict, run: RunDir, label_names, state, callbacks=None):
    """Stage 0 of one fold unless its `best/` exists; returns that best directory (the backbone stage 1 starts
    from). Only `splits["train"]` is read."""
    stage_dir, best_dir = run.stage(fold.number, STAGE0), run.best(fold.number, STAGE0)
    finished = usable_best(best_dir, remove_corrupt=state.is_main_process)
    state.wait_for_everyone()
    if finished:
        _log(state, f"{fold_name(fold.number)}: stage 0 (FLEA) already finished ({best_dir}), skipping.")
        return best_dir
    if state.is_main_process:
        cleanup_stale_tmp(stage_dir)
    resume_from = latest_checkpoint(stage_dir, remove_incomplete=state.is_main_process)
    state.wait_for_everyone()
    settings, seed = config["stage0"], stage0_seed(config["seed"], fold.number)
    resuming = f" · resuming from {resume_from}" if resume_from else ""
    _log(state, f"{fold_name(fold.number)}: stage 0 (FLEA, layer {settings['layer']}, {settings['clusters']} "
         f"clusters) · {fold.describe()}{resuming}")  # fmt: skip
    original = AutoModelForFrameAlignedClassification.config_from_pretrained(init_path)
    set_seed(seed)
    backbone = AutoModelForFrameAlignedClassification.from_pretrained(
        init_path, start_new_head=True, **stage_model_kwargs(config, STAGE0, label_names)
    )
    backbone.freeze_for_training()  # the CNN always; layers below the top num_trainable_layers
    backbone = backbone.base_model
    args = stage0_training_arguments(config, fold, stage_dir.resolve())
    labels = fold_pseudo_labels(backbone.to(args.device), splits["train"], config, fold, run, state)
    set_seed(seed)  # the projection's initialisation does not depend on whether the labels were made or read
    model = MaskedPseudoLabelModel(backbone, settings["clusters"])
    collator = PseudoLabelCollator(make_feature_extractor(), backbone.config)
    trainer = MaskedPredictionTrainer(
        model=model, args=args, train_dataset=PseudoLabelDataset(labels), data_collator=collator
    )
    for callback in callbacks or []:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume_from)
    if state.is_main_process:
        save_stage0_backbone(model.backbone, best_dir, original, run.pseudo_labels(fold.number))
        fault_point("best:written:stage0")
    state.wait_for_everyone()
    release_trainer(trainer)
    _log(state, f"{fold_name(fold.number)}: stage 0 done → {best_dir}")
    return best_dir


def save_stage0_backbone(backbone, best_dir: Path, original, pseudo_labels_dir: Path):
    """`best/`: the backbone with the initial checkpoint's SpecAugment and freezing settings (stage 0's own are
    not passed on to stage 1) and `continued_pretraining` = the pseudo labels' summary; checksums."""
    for name in RESTORED_ATTRIBUTES:
        setattr(backbone.config, name, getattr(original, name, None))
    setattr(backbone.config, RECORD_ATTRIBUTE, read_json(pseudo_labels_dir / PSEUDO_LABELS_SUMMARY))
    with atomic_directory(best_dir) as tmp:
        backbone.save_pretrained(tmp)
        make_feature_extractor().save_pretrained(tmp)
        write_manifest(tmp)


def _log(state: PartialState, message: str):
    if state.is_main_process:
        logger.info(message)


__all__ = [
    "RECORD_ATTRIBUTE",
    "STAGE0_OVERRIDES",
    "stage0_config_problems",
    "stage0_data_problems",
    "stage0_seed",
    "stage0_training_arguments",
    "train_stage0",
]
