"""What a stage starts or resumes from: the initial backbone (and the model class for it), and the newest complete
Trainer checkpoint.

A kill during a Trainer save leaves a `checkpoint-N` without some of its files: resuming skips (and removes) it
and restarts from the one before, with the RNG states, optimizer and scheduler that one saved.
"""

import logging
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers import PreTrainedConfig, set_seed

from ..collator import make_feature_extractor
from ..configuration_frame_aligned import frame_aligned_config_class
from ..modeling_frame_aligned import FrameAlignedModelMixin, frame_aligned_model_class
from .io_utils import atomic_directory, read_json
from .run_dir import RunDir, checkpoint_dirs


logger = logging.getLogger(__name__)

# Files a Trainer checkpoint needs to be resumed from; trainer_state.json is written last.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


def label_maps(label_names: list[str]) -> dict:
    """`id2label` and `label2id` of a config."""
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


class ModelSettingsError(ValueError):
    """The model settings cannot train: an unsupported checkpoint, a config field the head refuses, a cache the model
    cannot use (found before training; `train.py` prints it and exits with status 2)."""


class BackboneWeightsError(ModelSettingsError):
    """A checkpoint's backbone weights did not load into the model class (a mismatched or broken checkpoint)."""


def model_class_of(name_or_path: str | Path) -> type[FrameAlignedModelMixin]:
    """The frame-aligned model class for a checkpoint (a Hub id or folder), from its config.json's `model_type`:
    a plain backbone ("wav2vec2", "hubert", "wavlm", "data2vec-audio") or a frame-aligned checkpoint of one.

    Raises:
        ValueError: no readable config.json, or a model type without a frame-aligned class (the message names the
            checkpoint, its model type and the supported ones).
    """
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(str(name_or_path))
    except OSError as exc:
        raise ValueError(f"{name_or_path}: cannot read the checkpoint's config.json ({exc}).") from exc
    try:
        return frame_aligned_model_class(config_dict.get("model_type"))
    except ValueError as exc:
        raise ValueError(f"{name_or_path}: {exc}") from None


def check_backbone_loaded(model: FrameAlignedModelMixin, source: str | Path) -> None:
    """Raise `BackboneWeightsError` when `from_pretrained(source)` left backbone tensors uninitialised: training would
    otherwise start from a randomly initialised backbone without a word (transformers only logs missing keys)."""
    missing = model.missing_backbone_keys
    if missing:
        prefix = model.base_model_prefix
        raise BackboneWeightsError(
            f"{source}: {len(missing)} backbone tensors of {type(model).__name__} are missing from the checkpoint "
            f"(e.g. {missing[:3]}), so its backbone would start from random weights. The checkpoint's config.json says "
            f"model_type={model.config.model_type!r}-compatible, but its weights are not a `{prefix}` backbone's: "
            "check model.name_or_path (and that config.json belongs to those weights)."
        )


def initial_checkpoint(config: dict, run: RunDir, label_names: list[str], state: PartialState) -> str:
    """What stage 1 starts from: `model.name_or_path`, or a randomly initialised backbone saved in
    `run.pretrained` (seeded by `seed`, made once and reused by every fold and on resume). `random_init` may name the
    backbone with `model_type` ("wav2vec2", the default, "hubert", "wavlm", "data2vec-audio")."""
    model = config["model"]
    if model["name_or_path"]:
        return model["name_or_path"]
    path = run.pretrained
    if state.is_main_process and not path.is_dir():
        set_seed(config["seed"])
        settings = dict(model["random_init"])
        config_class = frame_aligned_config_class(settings.pop("model_type", "wav2vec2"))
        backbone_config = config_class(**settings, **label_maps(label_names))
        with atomic_directory(path) as tmp:
            frame_aligned_model_class(config_class.model_type)(backbone_config).save_pretrained(tmp)
            make_feature_extractor().save_pretrained(tmp)
    state.wait_for_everyone()
    return str(path)


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
    checkpoints = checkpoint_dirs(stage_dir)
    complete = [p for p in checkpoints if is_complete_checkpoint(p)]
    if remove_incomplete:
        for path in checkpoints:
            if path not in complete:
                logger.warning(f"Removing incomplete checkpoint {path} (interrupted while saving).")
                shutil.rmtree(path, ignore_errors=True)
    return str(complete[-1]) if complete else None


__all__ = [
    "BackboneWeightsError",
    "CHECKPOINT_FILES",
    "ModelSettingsError",
    "check_backbone_loaded",
    "initial_checkpoint",
    "is_complete_checkpoint",
    "label_maps",
    "latest_checkpoint",
    "model_class_of",
]
