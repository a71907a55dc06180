"""What a stage starts or resumes from: the initial backbone, and the newest complete Trainer checkpoint.

A kill during a Trainer save leaves a `checkpoint-N` without some of its files: resuming skips (and removes) it
and restarts from the one before, with the RNG states, optimizer and scheduler that one saved.
"""

import logging
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers import set_seed

from ..collator import make_feature_extractor
from ..configuration_frame_aligned import Wav2Vec2FrameAlignedConfig
from ..modeling_frame_aligned import Wav2Vec2ForFrameAlignedClassification
from .io_utils import atomic_directory, read_json
from .run_dir import RunDir, checkpoint_dirs


logger = logging.getLogger(__name__)

# Files a Trainer checkpoint needs to be resumed from; trainer_state.json is written last.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


def label_maps(label_names: list[str]) -> dict:
    """`id2label` and `label2id` of a config."""
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


def initial_checkpoint(config: dict, run: RunDir, label_names: list[str], state: PartialState) -> str:
    """What stage 1 starts from: `model.name_or_path`, or a randomly initialised backbone saved in
    `run.pretrained` (seeded by `seed`, made once and reused by every fold and on resume)."""
    model = config["model"]
    if model["name_or_path"]:
        return model["name_or_path"]
    path = run.pretrained
    if state.is_main_process and not path.is_dir():
        set_seed(config["seed"])
        backbone_config = Wav2Vec2FrameAlignedConfig(
            **model["random_init"],
            **label_maps(label_names),
        )
        with atomic_directory(path) as tmp:
            Wav2Vec2ForFrameAlignedClassification(backbone_config).save_pretrained(tmp)
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


__all__ = ["CHECKPOINT_FILES", "initial_checkpoint", "is_complete_checkpoint", "label_maps", "latest_checkpoint"]
