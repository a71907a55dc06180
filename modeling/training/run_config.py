"""Experiment configs (YAML): defaults, `extends:` inheritance, command-line overrides, validation.

A config has the sections below (every key optional except `data.loader`, `data.root` and one of
`model.name_or_path` / `model.random_init`); `DEFAULTS` documents them. The resolved config (defaults merged,
overrides applied) is what a run records in `RUN/config.yaml` and `results.json`.

`training:`, `stage1:` and `stage2:` also take any `transformers.TrainingArguments` field (`report_to`, `run_name`,
`eval_steps`, ...; `training:` for both stages, a stage's own value wins), except those train.py sets itself
(`RESERVED_TRAINING_ARGUMENTS`). Every problem is collected and reported at once (`ConfigError`); the stages'
model configs and `TrainingArguments` are built from the config before anything trains
(`modeling.training.config_checks.check_training_setup`).
"""

import copy
from pathlib import Path

import yaml


STAGE_DEFAULTS = {
    "pooling": "attentive",
    "epochs": 1,
    "batch_size": 32,
    "eval_batch_size": None,  # default: batch_size
    "gradient_accumulation_steps": 1,
    "backbone_learning_rate": 1e-4,
    "pooling_learning_rate": 5e-4,
    "classifier_learning_rate": 1e-4,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "lr_scheduler_type": "linear",
    "max_length_seconds": None,  # training crops (random window); evaluation uses whole clips
    "num_trainable_layers": None,  # None: every transformer layer trains (CNN always frozen)
    "eal_weight": 0.0,
    "fual_weight": 0.0,
    "eal_margin": 0.8,
    "fual_detach_target": False,
    # Stage 2 only: run the frozen CNN + lower layers once per fold and train from their cached output
    # (modeling/prefix_cache/; about 1.6x faster epochs for wav2vec2-base). Dropout/LayerDrop/SpecAugment below
    # the first trainable layer do not run then, and each clip keeps one fixed training crop.
    "cache_frozen_prefix": False,
    "prefix_cache_dtype": "float16",  # float32 | float16 | bfloat16
    "prefix_cache_on_disk": False,  # memory-mapped under fold<k>/stage2/prefix_cache (reused on resume)
    # Imbalance and soft labels (docs/imbalance_and_soft_labels.md): the utterance loss only, EAL/FUAL unchanged.
    "class_weights": None,  # null | inverse | inverse_sqrt (training-split counts) | {class name: weight}
    "focal_gamma": 0.0,  # focal loss γ (0 = cross-entropy)
    "soft_labels": False,  # train against the corpus's label_distribution (annotator votes); metrics: consensus
    "class_balanced_sampling": False,  # every class equally often per epoch, batches still length-sorted
    # The checkpoint kept as best/: ua | wa | macro_f1 | loss (validation; loss: lower is better).
    "metric_for_best_model": "ua",
}

DEFAULTS = {
    "seed": 42,
    "data": {
        "loader": None,  # iemocap | crema_d | ravdess | audio_folder | hub
        "root": None,  # corpus folder (relative to the working directory) or Hub dataset id
        "loader_args": {},  # extra keyword arguments of the loader (e.g. labels, split, speaker_column)
        "folds": "leave_speakers_out",  # leave_one_session_out | leave_speakers_out | gender_pairs | predefined
        "num_folds": None,  # leave_speakers_out: number of speaker groups (default: one per speaker)
        "speakers": None,  # keep only these speakers
        "max_per_speaker": None,  # keep at most this many clips per speaker (classes interleaved)
    },
    "model": {
        "name_or_path": None,  # pre-trained backbone: Hub id (facebook/wav2vec2-base) or local folder
        # or: config arguments of a randomly initialised backbone (+ model_type: wav2vec2/hubert/wavlm/data2vec-audio)
        "random_init": None,
        "config_overrides": {},  # extra config attributes for both stages (e.g. mask_time_prob, layerdrop)
    },
    "training": {
        "full_determinism": False,  # torch deterministic algorithms (slower on GPU)
        "save_total_limit": 2,  # Trainer checkpoints kept per stage (the best one is always kept)
        "logging_steps": 10,
        "dataloader_num_workers": 0,
        "bf16": False,
        "fp16": False,
        "activation_checkpointing": False,  # recompute activations in backward (less memory)
    },
    # from_run: reuse fold<k>/stage1/best of another run directory instead of training stage 1 (Table 3 ablations
    # share one stage 1).
    "stage1": {**STAGE_DEFAULTS, "pooling": "attentive", "from_run": None},
    "stage2": {
        **STAGE_DEFAULTS,
        "pooling": "cls_attention",
        "backbone_learning_rate": 1e-5,
        "pooling_learning_rate": 3e-4,
        "classifier_learning_rate": 3e-4,
        "num_trainable_layers": 6,
        "eal_weight": 0.05,
        "fual_weight": 0.05,
    },
}
# Sections whose content is free-form (passed through to a loader or a model config).
FREE_FORM = {("data", "loader_args"), ("model", "random_init"), ("model", "config_overrides")}


class ConfigError(ValueError):
    """An invalid config: the message names the file and the key."""


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: str | Path, _seen: tuple = ()) -> dict:
    """A YAML config with its `extends:` chain resolved (paths relative to the file that extends)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: `extends` loop through {[str(p) for p in _seen]}.")
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist.")
    with open(path) as f:
        content = yaml.safe_load(f) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(content).__name__}.")
    parent = content.pop("extends", None)
    if parent is None:
        return content
    return _merge(read_config_file(path.parent / parent, _seen + (path,)), content)


def parse_override(text: str) -> tuple[list[str], object]:
    """`"stage2.epochs=5"` → (["stage2", "epochs"], 5); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. stage2.epochs=5), got {text!r}.")
    return key.strip().split("."), yaml.safe_load(value)


# TrainingArguments fields train.py derives from its own keys or fixes (with what to set instead).
RESERVED_TRAINING_ARGUMENTS = {
    "output_dir": "--output-dir",
    "num_train_epochs": "epochs",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "learning_rate": "backbone_learning_rate",
    "warmup_steps": "warmup_ratio",
    "seed": "the top-level seed",
    "data_seed": "the top-level seed",
    "metric_for_best_model": "stage1/stage2.metric_for_best_model (ua, wa, macro_f1 or loss)",
    "greater_is_better": "nothing: it follows stage1/stage2.metric_for_best_model (lower is better for loss)",
    "load_best_model_at_end": "nothing: train.py keeps the best checkpoint itself",
    "remove_unused_columns": "nothing: the collator needs the audio column",
    "train_sampling_strategy": "nothing: batches are always length-sorted (see class_balanced_sampling)",
    "length_column_name": "nothing: lengths are the corpus's `duration`",
    "use_cpu": "nothing: chosen from the hardware and torchrun",
}
PASSTHROUGH_SECTIONS = ("training", "stage1", "stage2")


def training_argument_names() -> set[str]:
    """Fields of `FrameAlignedTrainingArguments` a config may set under training:/stage1:/stage2:."""
    from dataclasses import fields

    from ..trainer.trainer import FrameAlignedTrainingArguments

    return {f.name for f in fields(FrameAlignedTrainingArguments) if f.init} - set(RESERVED_TRAINING_ARGUMENTS)


def passthrough_settings(config: dict, stage: str) -> dict:
    """The `TrainingArguments` fields set in `training:` and then `stage:` (the stage's win), by name."""
    return {
        key: value
        for section in ("training", stage)
        for key, value in config[section].items()
        if key not in DEFAULTS[section]
    }


def _check_keys(config: dict, defaults: dict, source: str, problems: list[str], prefix: tuple = ()):
    """Append a problem for each unknown, reserved or misplaced key, and remove that key from `config`."""
    for key, value in list(config.items()):
        where = ".".join(prefix + (key,))
        problem = None
        if key not in defaults:
            problem = _unknown_key_problem(defaults, prefix, key, value, where)
        elif isinstance(defaults[key], dict) and value is not None and not isinstance(value, dict):
            problem = f"{where!r} must be a mapping, got {value!r}."
        elif isinstance(defaults[key], dict) and prefix + (key,) not in FREE_FORM and isinstance(value, dict):
            _check_keys(value, defaults[key], source, problems, prefix + (key,))
        if problem:
            problems.append(problem)
            del config[key]


def _unknown_key_problem(defaults: dict, prefix: tuple, key: str, value, where: str) -> str | None:
    """None for a `TrainingArguments` field under training:/stage1:/stage2:, else what is wrong with the key."""
    if len(prefix) != 1 or prefix[0] not in PASSTHROUGH_SECTIONS:
        return f"unknown key {where!r}; expected one of {sorted(defaults)}."
    if key in RESERVED_TRAINING_ARGUMENTS:
        return f"{where} is set by train.py; set {RESERVED_TRAINING_ARGUMENTS[key]} instead (got {value!r})."
    if key in training_argument_names():
        return None
    return f"unknown key {where!r}; expected one of {sorted(defaults)} or a TrainingArguments field."


def resolve_config(
    path: str | Path,
    overrides: list[str] = (),
    data_dir: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
) -> dict:
    """Defaults ← config file (with `extends`) ← `--set` overrides ← `--data-dir` / `--max-epochs` / `--seed`.

    Every problem (unknown keys; bad values, with what is allowed) is listed in one `ConfigError`. train.py also
    builds both stages' model configs and `TrainingArguments` first: `config_checks.resolve_checked_config`.
    """
    config, problems, _ = resolve_config_problems(path, overrides, data_dir, max_epochs, seed)
    if problems:
        raise ConfigError(listing(str(path), problems))
    return config


def resolve_config_problems(
    path: str | Path,
    overrides: list[str] = (),
    data_dir: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
) -> tuple[dict, list[str], set[tuple[str, str]]]:
    """`resolve_config` without raising: (config with each bad value reset to its default, the problems, the
    (section, key) pairs reset)."""
    source = str(path)
    config = read_config_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    problems: list[str] = []
    _check_keys(config, DEFAULTS, source, problems)  # drops what it reports, so the checks below still run
    config = _merge(DEFAULTS, config)
    if data_dir is not None:
        config["data"]["root"] = data_dir
    if seed is not None:
        config["seed"] = seed
    if max_epochs is not None:
        for stage in ("stage1", "stage2"):
            if _is_number(config[stage]["epochs"]):
                config[stage]["epochs"] = min(config[stage]["epochs"], max_epochs)
    invalid: set[tuple[str, str]] = set()
    problems += _check_values(config, invalid)
    return config, problems, invalid


def listing(source: str, problems: list[str]) -> str:
    """The message of a `ConfigError` with several problems."""
    return f"{len(problems)} problem(s) in {source} (nothing trained):\n" + "\n".join(f"  - {p}" for p in problems)


FLOAT_KEYS = (
    "backbone_learning_rate",
    "pooling_learning_rate",
    "classifier_learning_rate",
    "weight_decay",
    "warmup_ratio",
    "eal_weight",
    "fual_weight",
    "eal_margin",
    "max_length_seconds",
    "focal_gamma",
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scheduler_types() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [member.value for member in SchedulerType]


def _stage_rules() -> dict:
    """key → (accepts(value), what is allowed), for the stage settings."""
    from ..configuration_frame_aligned import POOLING_TYPES
    from ..trainer.loss_options import loss_option_problems
    from .selection import SELECTION_METRICS

    nonnegative = (lambda v: _is_number(v) and v >= 0, "a number >= 0")
    flag = (lambda v: isinstance(v, bool), "true or false")
    return {
        "pooling": (lambda v: v in POOLING_TYPES, f"one of {list(POOLING_TYPES)}"),
        "epochs": (lambda v: _is_number(v) and v > 0, "a number > 0"),
        "batch_size": (lambda v: _is_int(v) and v > 0, "an integer >= 1"),
        "eval_batch_size": (lambda v: v is None or (_is_int(v) and v > 0), "null (= batch_size) or an integer >= 1"),
        "gradient_accumulation_steps": (lambda v: _is_int(v) and v > 0, "an integer >= 1"),
        "backbone_learning_rate": nonnegative,
        "pooling_learning_rate": nonnegative,
        "classifier_learning_rate": nonnegative,
        "weight_decay": nonnegative,
        "warmup_ratio": (lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1) (a fraction of the steps)"),
        "lr_scheduler_type": (lambda v: v in _scheduler_types(), f"one of {_scheduler_types()}"),
        "max_length_seconds": (lambda v: v is None or (_is_number(v) and v > 0), "null (whole clips) or a number > 0"),
        "num_trainable_layers": (lambda v: v is None or (_is_int(v) and v >= 0), "null (all) or an integer >= 0"),
        "eal_weight": nonnegative,
        "fual_weight": nonnegative,
        "eal_margin": (_is_number, "a number"),
        "fual_detach_target": flag,
        "cache_frozen_prefix": flag,
        "prefix_cache_dtype": (lambda v: v in ("float32", "float16", "bfloat16"), "float32, float16 or bfloat16"),
        "prefix_cache_on_disk": flag,
        "from_run": (lambda v: v is None or isinstance(v, str), "null or a run directory"),
        "class_weights": (
            lambda v: not loss_option_problems(v, 0.0),
            "null, inverse, inverse_sqrt or a mapping {class name: weight > 0}",
        ),
        "focal_gamma": (lambda v: _is_number(v) and v >= 0, "a number >= 0 (0 = cross-entropy)"),
        "soft_labels": flag,
        "class_balanced_sampling": flag,
        "metric_for_best_model": (lambda v: v in SELECTION_METRICS, f"one of {list(SELECTION_METRICS)}"),
    }


TRAINING_RULES = {
    "full_determinism": (lambda v: isinstance(v, bool), "true or false"),
    "save_total_limit": (lambda v: v is None or (_is_int(v) and v > 0), "null or an integer >= 1"),
    "logging_steps": (lambda v: _is_number(v) and v > 0, "a number > 0"),
    "dataloader_num_workers": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "bf16": (lambda v: isinstance(v, bool), "true or false"),
    "fp16": (lambda v: isinstance(v, bool), "true or false"),
    "activation_checkpointing": (lambda v: isinstance(v, bool), "true or false"),
}


def _coerce_floats(settings: dict):
    """PyYAML reads `1e-4` (no dot) as a string: accept it as the number it means (others stay for the rules)."""
    for key in FLOAT_KEYS:
        value = settings[key]
        if isinstance(value, str):
            try:
                settings[key] = float(value)
            except ValueError:
                pass


def _check_values(config: dict, invalid: set | None = None) -> list[str]:
    """Every bad value of the resolved config: key, value and what is allowed. Each bad stage/training value is
    reset to its default and its (section, key) added to `invalid`, so later checks neither trip on it again nor
    report it twice."""
    invalid = set() if invalid is None else invalid
    data, model = config["data"], config["model"]
    problems = []
    if not data["loader"] or not data["root"]:
        problems.append("data.loader and data.root are required (or pass --data-dir).")
    if bool(model["name_or_path"]) == bool(model["random_init"]):
        problems.append(
            "set exactly one of model.name_or_path (a pre-trained backbone, e.g. facebook/wav2vec2-base) "
            f"and model.random_init (a randomly initialised backbone config), got {model}."
        )
    from ..data.folds import FOLD_STRATEGIES

    if data["folds"] not in FOLD_STRATEGIES:
        problems.append(f"data.folds must be one of {list(FOLD_STRATEGIES)}, got {data['folds']!r}.")
    rules = _stage_rules()
    for stage in ("stage1", "stage2"):
        _coerce_floats(config[stage])
        for key, value in config[stage].items():
            if key in rules and not rules[key][0](value):
                problems.append(f"{stage}.{key} must be {rules[key][1]}, got {value!r}.")
                config[stage][key] = DEFAULTS[stage][key]
                invalid.add((stage, key))
    for key, (accepts, allowed) in TRAINING_RULES.items():
        if not accepts(config["training"][key]):
            problems.append(f"training.{key} must be {allowed}, got {config['training'][key]!r}.")
            config["training"][key] = DEFAULTS["training"][key]
            invalid.add(("training", key))
    if config["stage1"]["pooling"] == "cls_attention":
        problems.append("stage1.pooling must not be cls_attention (stage 2 starts the CLS head).")
    for key in ("soft_labels", "class_balanced_sampling"):  # the cache replays fixed batches without the corpus rows
        if config["stage2"]["cache_frozen_prefix"] and config["stage2"][key]:
            problems.append(f"stage2.{key} does not work with stage2.cache_frozen_prefix; turn one of them off.")
    return problems


def dump_config(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    keys = sorted(set(old) | set(new))
    differences = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differences += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            differences.append(f"{prefix}{key}: {a!r} → {b!r}")
    return differences


__all__ = [
    "ConfigError",
    "DEFAULTS",
    "RESERVED_TRAINING_ARGUMENTS",
    "config_differences",
    "dump_config",
    "listing",
    "passthrough_settings",
    "read_config_file",
    "resolve_config",
    "resolve_config_problems",
    "training_argument_names",
]
