"""The last config check before anything trains: build what each stage will build, from the config alone.

`resolve_config` checks keys and value ranges; this builds both stages' model configs (the backbone's config with
the stage's pooling, frozen layers and loss weights) and `TrainingArguments` (train.py's settings plus every
`TrainingArguments` field the config passes through), so a value that only the model config or transformers would
refuse (`stage2.lr_scheduler_type=linr`, a `report_to` tracker that is not installed, `num_trainable_layers` above
the backbone's depth) is reported at start, with its key, and not after stage 1 has trained.
"""

import tempfile
from pathlib import Path

from ..configuration_frame_aligned import frame_aligned_config_class
from ..data.folds import Fold
from ..data.problems import Problem
from ..trainer.lora import lora_config_problems, lora_settings, lora_settings_problems, target_problems
from ..trainer.trainer import FrameAlignedTrainingArguments
from .run_config import (
    ConfigError,
    attributed,
    command_line_origins,
    passthrough_settings,
    resolve_config_problems,
)
from .stage import stage_model_kwargs, training_argument_values
from .stage0 import stage0_config_problems


PREREQUISITE_KEYS = ("data.loader", "data.root", "model.name_or_path", "model.random_init")
PLACEHOLDER_LABELS = ["class0", "class1"]  # the corpus's labels are not known yet; they do not change any check


def backbone_config(config: dict) -> tuple[dict | None, list[Problem]]:
    """The backbone's config as a dict (from `model.random_init` or `model.name_or_path`), or the problem."""
    model = config["model"]
    if model["random_init"]:
        settings = {key: value for key, value in model["random_init"].items() if key != "model_type"}
        try:
            config_class = frame_aligned_config_class(model["random_init"].get("model_type", "wav2vec2"))
            return {**config_class(**settings).to_dict(), "model_type": config_class.model_type}, []
        except (TypeError, ValueError, AttributeError) as error:  # AttributeError: a key another backbone's config
            # has, read-only in this one (a wav2vec 2.0 intermediate_size in a Whisper random_init)
            return None, [Problem("model.random_init", f"model.random_init = {model['random_init']!r}: {error}")]
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model["name_or_path"]).to_dict(), []
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        message = f"model.name_or_path = {model['name_or_path']!r}: cannot read its config ({first_line})."
        return None, [Problem("model.name_or_path", message, model["name_or_path"])]


def stage_model_config(config: dict, stage: str, backbone: dict, skip: set = frozenset()):
    """The stage's model config (backbone + pooling, frozen layers, loss weights); keys in `skip` ((stage, key),
    already reported) are left at the config class's defaults. Raises what the config class raises."""
    kwargs = stage_model_kwargs(config, stage, PLACEHOLDER_LABELS)
    kwargs = {key: value for key, value in kwargs.items() if (stage, key) not in skip}
    settings = {key: value for key, value in backbone.items() if key not in ("model_type", "architectures")}
    # the backbone's own frame-aligned config (wav2vec2, HuBERT, WavLM, data2vec-audio)
    return frame_aligned_config_class(backbone.get("model_type", "wav2vec2"))(**{**settings, **kwargs})


def model_config_problems(config: dict, stage: str, backbone: dict, skip: set = frozenset()) -> list[Problem]:
    """What the stage's model config (`stage_model_config`) refuses."""
    try:
        stage_model_config(config, stage, backbone, skip)
    except (TypeError, ValueError) as error:
        return [Problem(stage, f"{stage}: the model config refuses these settings: {error}")]
    return []


def lora_problems(config: dict, backbone: dict | None, skip: set = frozenset()) -> list[Problem]:
    """`model.lora`'s own problems (`lora_config_problems`: keys, values, a cached stage, peft missing), then the
    settings against each stage's model, built on the meta device (no weights): target modules the backbone lacks,
    layers outside it or frozen by the stage (`trainer/lora.py: target_problems`)."""
    lora = config["model"]["lora"]
    if lora is None:
        return []
    problems = [Problem(keys[0], message) for keys, message in lora_config_problems(config)]
    if backbone is None or lora_settings_problems(lora):  # no backbone to check against, or no settings to check
        return problems
    import torch

    from ..auto_frame_aligned import FRAME_ALIGNED_MODELS

    settings = lora_settings(lora)
    for stage in ("stage1", "stage2"):
        try:
            stage_config = stage_model_config(config, stage, backbone, skip)
        except (TypeError, ValueError):
            continue  # reported by model_config_problems
        model_class = FRAME_ALIGNED_MODELS[stage_config.model_type]
        try:  # which modules a forward pass calls: on the meta device where the backbone runs there
            with torch.device("meta"):  # .to: a few tensors are made on the CPU whatever the default device
                problems += target_problems(model_class(stage_config).to("meta"), settings, stage)
        except (RuntimeError, NotImplementedError):  # e.g. data2vec-audio reads a tensor's value (.item())
            problems += target_problems(model_class(stage_config), settings, stage)
    return problems


def training_arguments_problems(config: dict, stage: str) -> list[Problem]:
    """Build the stage's `TrainingArguments`; on failure, find the key(s) responsible by trying each set field."""
    fold = Fold(1, (), (), ())
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = Path(tmp) / stage
        values = training_argument_values(config, stage, fold, output_dir)
        error = _build_error(values)
        problems = _strategy_problems(values, stage) + _ignored_step_problems(config, stage, values)
        if error is None:
            return problems + _tracker_problems(config, stage, values.get("report_to"))
        base = {key: value for key, value in values.items() if key not in passthrough_settings(config, stage)}
        for key, value in passthrough_settings(config, stage).items():
            single = _build_error({**base, key: value})
            if single is not None:
                where = f"{_section_of(config, stage, key)}.{key}"
                problems.append(Problem(where, f"{where} = {value!r}: {single}", value))
        if not problems:
            problems.append(Problem(stage, f"{stage}: TrainingArguments refuses the combination: {error}"))
        return problems


def _tracker_problems(config: dict, stage: str, report_to) -> list[Problem]:
    """Trackers named in `report_to` must be installed (the Trainer would raise only when the stage starts)."""
    from transformers.integrations import get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = get_available_reporting_integrations()
    missing = [name for name in names if name not in ("none", "all") and name not in available]
    if not missing:
        return []
    where = f"{_section_of(config, stage, 'report_to')}.report_to"
    message = (
        f"{where} = {report_to!r}: {missing} not installed (installed trackers: {available or 'none'}); "
        "pip install it, or leave it out."
    )
    return [Problem(where, message, report_to)]


def _build_error(values: dict) -> str | None:
    try:
        FrameAlignedTrainingArguments(**values)
    except Exception as error:  # transformers raises ValueError, TypeError, ImportError (a missing tracker), ...
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return None


def _strategy_problems(values: dict, stage: str) -> list[Problem]:
    """The best checkpoint is found among saved ones by its evaluation: saves must follow evaluations."""
    eval_strategy, save_strategy = str(values.get("eval_strategy")), str(values.get("save_strategy"))
    problems = []
    if eval_strategy != save_strategy:
        message = (
            f"{stage}: eval_strategy ({eval_strategy!r}) and save_strategy ({save_strategy!r}) must be equal "
            "(the best checkpoint is chosen among saved ones by its validation UA)."
        )
        problems.append(Problem(f"{stage}.eval_strategy", message, eval_strategy))
    elif eval_strategy == "steps" and values.get("eval_steps") != values.get("save_steps"):
        message = (
            f"{stage}: eval_steps ({values.get('eval_steps')!r}) and save_steps ({values.get('save_steps')!r}) "
            "must be equal (every evaluated step needs its checkpoint)."
        )
        problems.append(Problem(f"{stage}.eval_steps", message, values.get("eval_steps")))
    return problems


def _ignored_step_problems(config: dict, stage: str, values: dict) -> list[Problem]:
    """`eval_steps` / `save_steps` only act with the `steps` strategy: set otherwise, they would be ignored."""
    problems = []
    for key, strategy in (("eval_steps", "eval_strategy"), ("save_steps", "save_strategy")):
        if key in passthrough_settings(config, stage) and str(values.get(strategy)) != "steps":
            where = f"{_section_of(config, stage, key)}.{key}"
            message = (
                f"{where} = {values[key]!r} has no effect with {strategy} {str(values.get(strategy))!r}: "
                "also set eval_strategy: steps and save_strategy: steps (equal steps)."
            )
            problems.append(Problem(where, message, values[key]))
    return problems


def _section_of(config: dict, stage: str, key: str) -> str:
    return stage if key in config[stage] else "training"


def check_training_setup(config: dict, skip: set = frozenset()) -> list[Problem]:
    """Every problem building both stages' model configs and `TrainingArguments` would meet (empty: fine).

    `skip`: (section, key) pairs already reported (and reset to defaults) by `resolve_config`.
    """
    backbone, problems = backbone_config(config)
    for stage in ("stage1", "stage2"):
        if backbone is not None:
            problems += model_config_problems(config, stage, backbone, skip)
        problems += training_arguments_problems(config, stage)
    problems += lora_problems(config, backbone, skip)
    if backbone is not None and config["stage0"]["enabled"]:  # FLEA's continued pre-training (stage0.py)
        problems += model_config_problems(config, "stage0", backbone, skip) + stage0_config_problems(config, backbone)
    return list(dict.fromkeys(problems))  # a training: value that fails fails in both stages: say it once


def raise_on_setup_problems(config: dict, source: str = "the config"):
    """`ConfigError` listing every problem of `check_training_setup`."""
    problems = check_training_setup(config)
    if problems:
        raise ConfigError(problems, source=source)


def resolve_checked_config(
    path, overrides=(), data_dir: str | None = None, max_epochs: int | None = None, seed: int | None = None
) -> dict:
    """`resolve_config` + `check_training_setup`, every problem of both in one `ConfigError` (what train.py runs)."""
    config, problems, invalid = resolve_config_problems(path, overrides, data_dir, max_epochs, seed)
    # Building the stages needs a backbone and a corpus: skip it when those keys are the problem.
    if not any(problem.key in PREREQUISITE_KEYS for problem in problems):
        problems += check_training_setup(config, skip=invalid)
    if problems:
        raise ConfigError(*attributed(problems, path, command_line_origins(overrides, data_dir, max_epochs, seed)))
    return config


__all__ = ["backbone_config", "check_training_setup", "raise_on_setup_problems", "resolve_checked_config"]
