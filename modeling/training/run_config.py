"""Experiment configs (YAML): defaults, `extends:` inheritance, command-line overrides, validation.

A config has the sections below (every key optional except `data.loader`, `data.root` and one of
`model.name_or_path` / `model.random_init`); `DEFAULTS` documents them. The resolved config (defaults merged,
overrides applied) is what a run records in `RUN/config.yaml` and `results.json`.
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
    # (modeling/training/prefix_*.py; about 1.6x faster epochs for wav2vec2-base). Dropout/LayerDrop/SpecAugment below
    # the first trainable layer do not run then, and each clip keeps one fixed training crop.
    "cache_frozen_prefix": False,
    "prefix_cache_dtype": "float16",  # float32 | float16 | bfloat16
    "prefix_cache_on_disk": False,  # memory-mapped under fold<k>/stage2/prefix_cache (reused on resume)
}

DEFAULTS = {
    "seed": 42,
    "data": {
        "loader": None,  # iemocap | crema_d | ravdess | audio_folder | hub
        "root": None,  # corpus folder (relative to the working directory) or Hub dataset id
        "loader_args": {},  # extra keyword arguments of the loader (e.g. labels, split, speaker_column)
        "folds": "leave_speakers_out",  # leave_one_session_out | leave_speakers_out | gender_pairs
        "num_folds": None,  # leave_speakers_out: number of speaker groups (default: one per speaker)
        "speakers": None,  # keep only these speakers
        "max_per_speaker": None,  # keep at most this many clips per speaker (classes interleaved)
    },
    "model": {
        "name_or_path": None,  # pre-trained backbone: Hub id (facebook/wav2vec2-base) or local folder
        "random_init": None,  # or: config arguments of a randomly initialised backbone (+ model_type: wav2vec2, hubert, wavlm, data2vec-audio)
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


def _check_keys(config: dict, defaults: dict, source: str, prefix: tuple = ()):
    for key, value in config.items():
        where = ".".join(prefix + (key,))
        if key not in defaults:
            raise ConfigError(f"{source}: unknown key {where!r}; expected one of {sorted(defaults)}.")
        if prefix + (key,) in FREE_FORM:
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{source}: {where!r} must be a mapping, got {value!r}.")
        elif isinstance(defaults[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {where!r} must be a mapping, got {value!r}.")
            _check_keys(value, defaults[key], source, prefix + (key,))


def resolve_config(
    path: str | Path,
    overrides: list[str] = (),
    data_dir: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
) -> dict:
    """Defaults ← config file (with `extends`) ← `--set` overrides ← `--data-dir` / `--max-epochs` / `--seed`."""
    source = str(path)
    config = read_config_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    _check_keys(config, DEFAULTS, source)
    config = _merge(DEFAULTS, config)
    if data_dir is not None:
        config["data"]["root"] = data_dir
    if seed is not None:
        config["seed"] = seed
    if max_epochs is not None:
        for stage in ("stage1", "stage2"):
            config[stage]["epochs"] = min(config[stage]["epochs"], max_epochs)
    _check_values(config, source)
    return config


FLOAT_KEYS = (
    "backbone_learning_rate",
    "pooling_learning_rate",
    "classifier_learning_rate",
    "weight_decay",
    "warmup_ratio",
    "eal_weight",
    "fual_weight",
    "eal_margin",
)


def _coerce_floats(settings: dict, stage: str, source: str):
    """PyYAML reads `1e-4` (no dot) as a string: accept it as the number it means."""
    for key in FLOAT_KEYS:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{source}: {stage}.{key} must be a number, got {value!r}.")
        try:
            settings[key] = float(value)
        except ValueError:
            raise ConfigError(f"{source}: {stage}.{key} must be a number, got {value!r}.") from None


def _check_values(config: dict, source: str):
    data, model = config["data"], config["model"]
    if not data["loader"] or not data["root"]:
        raise ConfigError(f"{source}: data.loader and data.root are required (or pass --data-dir).")
    if bool(model["name_or_path"]) == bool(model["random_init"]):
        raise ConfigError(
            f"{source}: set exactly one of model.name_or_path (a pre-trained backbone, e.g. facebook/wav2vec2-base) "
            f"and model.random_init (a randomly initialised backbone config), got {model}."
        )
    for stage in ("stage1", "stage2"):
        settings = config[stage]
        _coerce_floats(settings, stage, source)
        if not isinstance(settings["epochs"], (int, float)) or settings["epochs"] <= 0:
            raise ConfigError(f"{source}: {stage}.epochs must be a positive number, got {settings['epochs']!r}.")
        if not isinstance(settings["batch_size"], int) or settings["batch_size"] <= 0:
            raise ConfigError(f"{source}: {stage}.batch_size must be a positive integer, got {settings['batch_size']!r}.")
    if config["stage1"]["pooling"] == "cls_attention":
        raise ConfigError(f"{source}: stage1.pooling must not be cls_attention (stage 2 starts the CLS head).")


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


__all__ = ["ConfigError", "DEFAULTS", "config_differences", "dump_config", "read_config_file", "resolve_config"]
