"""One stage of one fold: build its model and Trainer, train (resuming a checkpoint), keep the best model.

Stage 1 (attentive pooling, CE) starts from the backbone; stage 2 (`from_pretrained(stage1/best,
pooling="cls_attention", ...)`, CE + λ·EAL + λ·FUAL) from stage 1's best model, optionally trained from a cache of
its frozen prefix. The best checkpoint on validation UA is saved as the stage's `best/`; seeds depend only on
(seed, fold, stage), so a resumed stage ends as an uninterrupted one.
"""

import logging
import os
import shutil
from pathlib import Path

import torch
from accelerate import PartialState
from transformers import set_seed

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification, frame_aligned_class_of
from ..collator import AudioClassificationCollator, make_feature_extractor
from ..data.folds import Fold
from ..metrics import make_compute_metrics
from ..modeling_frame_aligned import FrameAlignedModelMixin
from ..prefix_cache.model import prefix_cache_problem
from ..prefix_cache.trainer import cached_stage_trainer
from ..rundir.atomic import atomic_directory, cleanup_stale_tmp
from ..rundir.faults import fault_point
from ..rundir.integrity import write_manifest
from ..rundir.layout import ADAPTER, RunDir, checkpoint_dir
from ..rundir.reader import FinishedRun, fold_name
from ..trainer.distributed import ddp_settings
from ..trainer.lora import save_merged, with_lora
from ..trainer.loss_options import resolve_class_weights
from ..trainer.memory import release_trainer
from ..trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments
from . import schema
from .checkpoints import label_maps, latest_checkpoint, usable_best
from .run_config import passthrough_settings
from .selection import metric_title, selection_arguments


logger = logging.getLogger(__name__)


def stage_title(stage: str, settings: dict) -> str:
    """ "stage 1 (attentive pooling, CE)", "stage 2 (cls_attention pooling, CE + 0.05·EAL + 0.05·FUAL)": the stage
    with the pooling and losses its settings configure (EAL and FUAL act with CLS pooling only)."""
    losses = "CE"
    if settings["pooling"] == "cls_attention":
        losses += f" + {settings['eal_weight']}·EAL + {settings['fual_weight']}·FUAL"
    return f"stage {stage.removeprefix('stage')} ({settings['pooling']} pooling, {losses})"


def cpu_distributed() -> bool:
    """Launched by torchrun without GPUs: accelerate needs `cpu=True` to set up gloo data parallelism."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def accelerator_available() -> bool:
    """A CUDA (or ROCm) GPU, or Apple's MPS."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def stage_seed(seed: int, fold: int, stage: str) -> int:
    """A seed per (fold, stage): the same whether a stage runs straight through or resumes."""
    return seed + 1000 * fold + (0 if stage == "stage1" else 500)


def _log(state: PartialState, message: str):
    if state.is_main_process:
        logger.info(message)


def stage_model_kwargs(config: dict, stage: str, label_names: list[str]) -> dict:
    """Config attributes `from_pretrained` sets for a stage (pooling, frozen layers, loss weights, labels)."""
    return {
        **(config["model"]["config_overrides"] or {}),
        **label_maps(label_names),
        **schema.model_kwargs(config[stage], stage),  # the options declared `to_model` in schema.py
    }


def stage_model(config: dict, stage: str, init_path: str, label_names: list[str], adapted: bool = False):
    """The model a stage starts from: the class from the checkpoint's model_type (wav2vec2, HuBERT, WavLM,
    data2vec-audio); a new head where the checkpoint has none (a plain backbone) or another pooling (stage 1 → 2);
    an incomplete backbone is refused. With `adapted` and `model.lora`: that model in a `peft.PeftModel` (the base
    frozen, the adapters and the head trained; `trainer/lora.py`). Seed first for a reproducible head."""
    model = AutoModelForFrameAlignedClassification.from_pretrained(
        init_path, start_new_head=True, **stage_model_kwargs(config, stage, label_names)
    )
    return with_lora(model, config["model"]["lora"]) if adapted and config["model"]["lora"] is not None else model


def model_problems(config: dict, init_path: str, label_names: list[str]) -> list[str]:
    """Everything wrong with the model settings, found before anything trains: a checkpoint without a frame-aligned
    class, each stage's config (fields the head refuses, e.g. `classifier_proj_size`), and a frozen-prefix cache
    the stage-2 model cannot use (weighted layer sum, WavLM). Missing backbone weights are found when stage 1 loads
    its model (`BackboneWeightsError`), also before training."""
    try:
        model_class = frame_aligned_class_of(init_path)
    except ValueError as exc:
        return [str(exc)]
    problems = []
    for stage in ("stage1", "stage2"):
        try:
            stage_config = AutoModelForFrameAlignedClassification.config_from_pretrained(
                init_path, **stage_model_kwargs(config, stage, label_names)
            )
        except (ValueError, TypeError) as exc:
            problems.append(f"{stage}: {exc}")
            continue
        trainable = stage_config.num_trainable_layers
        if (
            config[stage]["cache_frozen_prefix"]
            and trainable is not None
            and trainable < stage_config.num_hidden_layers
        ):
            problem = prefix_cache_problem(model_class, stage_config)
            problems += [f"{stage}: {problem}"] if problem else []
    return problems


def prefix_cache_dirs(run: RunDir, fold: Fold, stage: str, settings: dict, num_processes: int) -> dict | None:
    """Where the frozen-prefix caches go: {"train": dir, "validation": dir} on disk when `prefix_cache_on_disk`, and
    always with several processes (DDP): the main process builds each cache once and the others memory-map it; in
    memory every process would build its own copy, after the main one. None: in memory."""
    if not settings["prefix_cache_on_disk"] and num_processes <= 1:
        return None
    return {split: run.prefix_cache(fold.number, stage, split).resolve() for split in ("train", "validation")}


def training_arguments(
    config: dict, stage: str, fold: Fold, output_dir: Path, model: FrameAlignedModelMixin | None = None
) -> FrameAlignedTrainingArguments:
    """The stage's `TrainingArguments`: train.py's settings, then any `TrainingArguments` field the config sets
    under `training:` / `stage<s>:` (`passthrough_settings`); with `model`, also what DDP needs for it
    (`ddp_settings`). Trackers name the run `fold<k>-stage<s>` (after `run_name`, when one is set)."""
    values = training_argument_values(config, stage, fold, output_dir)
    return FrameAlignedTrainingArguments(**values, **(ddp_settings(model) if model is not None else {}))


def training_argument_values(config: dict, stage: str, fold: Fold, output_dir: Path) -> dict:
    """The keyword arguments of `training_arguments`, without the DDP settings (see there)."""
    seed = stage_seed(config["seed"], fold.number, stage)
    passthrough = passthrough_settings(config, stage)
    run_name = f"{fold_name(fold.number)}-{stage}"
    if passthrough.get("run_name"):
        run_name = f"{passthrough['run_name']}-{run_name}"
    return (
        # the options declared `to_args` in schema.py (epochs, batch sizes, learning rates, warmup, ...)
        schema.training_argument_kwargs(config["training"], "training")
        | schema.training_argument_kwargs(config[stage], stage)
        | fixed_training_argument_values(config, seed, output_dir)
        # The best checkpoint (on the stage's validation metric_for_best_model) is found from
        # `state.best_global_step` after training, not with load_best_model_at_end: its stored path goes stale
        # when a run directory is moved between runs. (class_weights, focal_gamma, soft_labels,
        # class_balanced_sampling: `to_args` in schema.py.)
        | selection_arguments(config[stage]["metric_for_best_model"])
        | passthrough
        | {"run_name": run_name}
    )


def fixed_training_argument_values(config: dict, seed: int, output_dir: Path) -> dict:
    """The `TrainingArguments` values train.py fixes for every stage (0, 1 and 2; stage 0 overrides the few in
    `stage0.STAGE0_OVERRIDES`): schema.py's `FIXED_TRAINING_ARGUMENTS`, the stage's `seed` (also `data_seed`) and
    `output_dir`, evaluation and a checkpoint per epoch, and the hardware's settings."""
    return dict(
        output_dir=str(output_dir),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="steps",
        report_to="none",
        seed=seed,
        data_seed=seed,
        # remove_unused_columns=False (the collator needs `audio`), length-sorted batches, ...: schema.py's
        **{name: value for name, (value, _) in schema.FIXED_TRAINING_ARGUMENTS.items() if value is not None},
        dataloader_pin_memory=torch.cuda.is_available(),
        # non-reentrant: works with DDP's find_unused_parameters (LayerDrop) and frozen inputs
        activation_checkpointing_kwargs=(
            {"use_reentrant": False} if config["training"]["activation_checkpointing"] else None
        ),
        disable_tqdm=False,
        # on a machine without an accelerator: the CPU explicitly (so bf16 runs as CPU autocast, not refused)
        use_cpu=cpu_distributed() or not accelerator_available(),
    )


def train_stage(
    stage: str,
    fold: Fold,
    splits,
    init_path: str,
    config: dict,
    run: RunDir,
    label_names: list[str],
    state: PartialState,
    callbacks: list | None = None,
) -> Path:
    """Train one stage of one fold unless its `best/` exists; returns that best directory."""
    stage_dir, best_dir = run.stage(fold.number, stage), run.best(fold.number, stage)
    finished = usable_best(best_dir, remove_corrupt=state.is_main_process)
    state.wait_for_everyone()
    if finished:
        title = stage_title(stage, config[stage])
        _log(state, f"{fold_name(fold.number)}: {title} already finished ({best_dir}), skipping.")
        return best_dir
    if stage == "stage1" and config["stage1"]["from_run"]:
        return reuse_stage1(fold, run, FinishedRun(config["stage1"]["from_run"]), state)
    if state.is_main_process:
        cleanup_stale_tmp(stage_dir)
    resume_from = latest_checkpoint(stage_dir, remove_incomplete=state.is_main_process)
    state.wait_for_everyone()
    settings = config[stage]
    _log(
        state,
        f"{fold_name(fold.number)}: {stage_title(stage, settings)} · {fold.describe()}"
        + (f" · resuming from {resume_from}" if resume_from else ""),
    )

    set_seed(stage_seed(config["seed"], fold.number, stage))  # the new head's (and adapter's) initialisation
    model = stage_model(config, stage, init_path, label_names, adapted=True)
    feature_extractor = make_feature_extractor(model.config)  # Whisper: raw amplitude (its log-mel needs it)
    args = training_arguments(config, stage, fold, stage_dir.resolve(), model)
    if isinstance(args.class_weights, str):  # from this fold's training counts (also for the prefix cache's trainer)
        weights = resolve_class_weights(args.class_weights, label_names, splits["train"]["label"]).tolist()
        args.class_weights = dict(zip(label_names, weights))
        weighting = f"{stage} class weights ({settings['class_weights']})"
        _log(state, f"{fold_name(fold.number)}: {weighting}: {args.class_weights}")
    if settings["cache_frozen_prefix"] and model.num_frozen_layers > 0:
        cache_dirs = prefix_cache_dirs(run, fold, stage, settings, state.num_processes)
        trainer = cached_stage_trainer(model, args, splits, settings, feature_extractor, cache_dirs, state)
    else:
        trainer = FrameAlignedTrainer(
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
    best_checkpoint = checkpoint_dir(stage_dir, trainer.state.best_global_step)
    if state.is_main_process:
        with atomic_directory(best_dir) as tmp:
            if config["model"]["lora"] is None:
                AutoModelForFrameAlignedClassification.from_pretrained(best_checkpoint).save_pretrained(tmp)
            else:  # the adapter applied to the stage's starting model, merged; the adapter files beside it
                save_merged(stage_model(config, stage, init_path, label_names), best_checkpoint, tmp, ADAPTER)
            feature_extractor.save_pretrained(tmp)
            write_manifest(tmp)
        fault_point(f"best:written:{stage}")
    state.wait_for_everyone()
    release_trainer(trainer)  # the stage's model, optimizer and gradients are freed now, not at the next gc
    _log(
        state,
        f"{fold_name(fold.number)}: {stage_title(stage, settings)} done, best validation "
        f"{metric_title(settings['metric_for_best_model'])} {trainer.state.best_metric:.4f} "
        f"({best_checkpoint.name}) → {best_dir}",
    )
    return best_dir


def reuse_stage1(fold: Fold, run: RunDir, from_run: FinishedRun, state: PartialState) -> Path:
    """Copy `from_run`'s stage-1 best model of this fold (hard links where possible) instead of training."""
    source, best_dir = from_run.best(fold.number, "stage1"), run.best(fold.number, "stage1")
    _log(state, f"{fold_name(fold.number)}: stage 1 reused from {source}.")
    if state.is_main_process:
        with atomic_directory(best_dir) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True, copy_function=_link_or_copy)
            write_manifest(tmp)
    state.wait_for_everyone()
    return best_dir


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


__all__ = [
    "cpu_distributed",
    "ddp_settings",
    "fixed_training_argument_values",
    "model_problems",
    "prefix_cache_dirs",
    "reuse_stage1",
    "stage_model",
    "stage_model_kwargs",
    "stage_seed",
    "stage_title",
    "train_stage",
    "training_arguments",
    "training_argument_values",
]
