"""What a stage starts or resumes from: the initial backbone (and the model class for it), and the newest complete
Trainer checkpoint.

A kill during a Trainer save leaves a `checkpoint-N` without some of its files, and a disk can truncate or corrupt
one later: resuming verifies each checkpoint (its files, then their sizes and SHA-256 against `checksums.json`, see
`integrity.py`), discards a bad one with a log line, and restarts from the newest good one, with the RNG states,
optimizer and scheduler that one saved.
"""

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path

from accelerate import PartialState
from transformers import set_seed

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification
from ..collator import make_feature_extractor
from ..configuration_frame_aligned import frame_aligned_config_class
from ..data.problems import CheckError, Problem
from ..rundir.atomic import atomic_directory, read_json
from ..rundir.integrity import checkpoint_problems, write_manifest
from ..rundir.layout import RunDir, checkpoint_dirs


logger = logging.getLogger(__name__)

# Files a Trainer checkpoint needs to be resumed from; trainer_state.json is written last.
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")
# A LoRA stage's checkpoint (`model.lora`: a peft model) holds the adapter and the head instead of model.safetensors.
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def label_maps(label_names: list[str]) -> dict:
    """`id2label` and `label2id` of a config."""
    return {"id2label": dict(enumerate(label_names)), "label2id": {name: i for i, name in enumerate(label_names)}}


# The model settings cannot train: an unsupported checkpoint, a config field the head refuses, a cache the model
# cannot use (found before training; `train.py` prints it and exits with status 2). The one error of the checks.
ModelSettingsError = CheckError


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
            AutoModelForFrameAlignedClassification.from_config(backbone_config).save_pretrained(tmp)
            make_feature_extractor(backbone_config).save_pretrained(tmp)
            write_manifest(tmp)
    state.wait_for_everyone()
    return str(path)


@contextlib.contextmanager
def model_check_path(config: dict, label_names: list[str]):
    """A checkpoint path to check the model settings on before anything is written: `model.name_or_path`, or for
    `model.random_init` a temporary folder holding only its config.json (what `initial_checkpoint` would save)."""
    model = config["model"]
    if model["name_or_path"]:
        yield model["name_or_path"]
        return
    settings = dict(model["random_init"])
    config_class = frame_aligned_config_class(settings.pop("model_type", "wav2vec2"))
    with tempfile.TemporaryDirectory() as tmp:
        config_class(**settings, **label_maps(label_names)).save_pretrained(tmp)
        yield tmp


def checkpoint_state(path: Path) -> Problem | None:
    """None for a Trainer checkpoint that is complete and intact, else why not: a `Problem` whose `cause` is
    "incomplete" (interrupted while saving) or "corrupt" (files differ from checksums.json)."""
    needed = CHECKPOINT_FILES
    if (path / ADAPTER_WEIGHTS).is_file():
        needed = tuple(ADAPTER_WEIGHTS if name == "model.safetensors" else name for name in CHECKPOINT_FILES)
    missing = [name for name in needed if not (path / name).is_file()]
    if missing:
        message = f"incomplete (interrupted while saving): no {', '.join(missing)}"
        return Problem(str(path), message, missing, cause="incomplete")
    try:
        read_json(path / "trainer_state.json")
    except ValueError:
        message = "incomplete (interrupted while saving): trainer_state.json is cut short"
        return Problem(str(path), message, cause="incomplete")
    problems = checkpoint_problems(path)
    return Problem(str(path), f"corrupt: {'; '.join(problems)}", problems, cause="corrupt") if problems else None


def is_complete_checkpoint(path: Path) -> bool:
    """A Trainer checkpoint written to the end (a kill mid-save leaves one without trainer_state.json) whose files
    still match their recorded sizes and hashes."""
    return checkpoint_state(path) is None


def latest_checkpoint(stage_dir: Path, remove_incomplete: bool) -> str | None:
    """The newest complete, intact `checkpoint-N` of a stage; incomplete or corrupt ones are logged and (with
    `remove_incomplete`) removed, so resuming falls back to the one before."""
    found = None
    for path in reversed(checkpoint_dirs(stage_dir)):
        problem = checkpoint_state(path)
        if problem is None:
            found = found or str(path)
            continue
        if remove_incomplete:
            logger.warning(f"Removing {problem.cause} checkpoint {path} ({problem.message}).")
            shutil.rmtree(path, ignore_errors=True)
    return found


def usable_best(best_dir: Path, remove_corrupt: bool) -> bool:
    """Whether a stage's `best/` exists and is intact; a corrupt one is logged and (with `remove_corrupt`) removed,
    so the stage is finished again from its checkpoints (or retrained)."""
    if not best_dir.is_dir():
        return False
    problems = checkpoint_problems(best_dir)
    if not (best_dir / "model.safetensors").is_file():
        problems.append("model.safetensors: missing")
    if not problems:
        return True
    if remove_corrupt:
        logger.warning(f"Discarding corrupt best model {best_dir} ({'; '.join(problems)}); finishing the stage again.")
        shutil.rmtree(best_dir, ignore_errors=True)
    return False


__all__ = [
    "ADAPTER_WEIGHTS",
    "CHECKPOINT_FILES",
    "ModelSettingsError",
    "checkpoint_state",
    "initial_checkpoint",
    "is_complete_checkpoint",
    "label_maps",
    "latest_checkpoint",
    "model_check_path",
    "usable_best",
]
