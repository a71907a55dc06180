"""Experiment configs (YAML): defaults, `extends:` inheritance, command-line overrides, validation.

A config has the sections below (every key optional except `data.loader`, `data.root` and one of
`model.name_or_path` / `model.random_init`); `schema.py` declares them (defaults, types, allowed values, docs;
docs/configuration.md is generated from it). The resolved config (defaults merged,
overrides applied) is what a run records in `RUN/config.yaml` and `results.json`.

`training:`, `stage1:` and `stage2:` also take any `transformers.TrainingArguments` field (`report_to`, `run_name`,
`eval_steps`, ...; `training:` for both stages, a stage's own value wins), except those train.py sets itself
(`RESERVED_TRAINING_ARGUMENTS`). Every problem is collected and reported at once (`ConfigError`, which is
`modeling.data.problems.CheckError`); the stages' model configs and `TrainingArguments` are built from the config
before anything trains (`modeling.training.config_checks.check_training_setup`).
"""

import copy
import dataclasses
import difflib
import typing
from pathlib import Path

import yaml

from ..data.problems import CheckError, Problem, report
from . import schema


DEFAULTS = schema.defaults()  # the resolved config of an empty file (see schema.py for every option)
# TrainingArguments fields train.py derives from its own keys or fixes (with what to set instead).
RESERVED_TRAINING_ARGUMENTS = schema.reserved_training_arguments()
PASSTHROUGH_SECTIONS = schema.PASSTHROUGH_SECTIONS
ConfigError = CheckError  # the one error class of the checks (modeling.data.problems)


def union_types(annotation) -> tuple[type, ...]:
    """Every non-null type of an annotation (`dict | str | None` → (dict, str))."""
    args = typing.get_args(annotation) or (annotation,)
    return tuple(typing.get_origin(a) or a for a in args if a is not type(None))


def base_type(annotation) -> tuple[type, bool]:
    """(the type, whether null is accepted) of an annotation such as `float | None`."""
    args = typing.get_args(annotation)
    if args:
        kinds = [a for a in args if a is not type(None)]
        base = typing.get_origin(kinds[0]) or kinds[0]
        return base, type(None) in args
    return typing.get_origin(annotation) or annotation, False


def nearest(key: str, candidates) -> str | None:
    """The valid key closest to a misspelt one (difflib), or None."""
    found = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: str | Path) -> dict:
    """A YAML config with its `extends:` chain resolved (paths relative to the file that extends)."""
    merged: dict = {}
    for _, content in config_chain(path):
        merged = _merge(merged, content)
    return merged


def config_chain(path: str | Path, _seen: tuple = ()) -> list[tuple[Path, dict]]:
    """[(file, its own content without `extends`)] from the config `path` extends first to `path` itself last (the
    order they are merged in: a later file's keys win). Raises `ConfigError` for a missing file, an `extends` loop
    or a file whose top level is not a mapping."""
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
    chain = [] if parent is None else config_chain(path.parent / parent, _seen + (path,))
    return chain + [(path, content)]


def config_origins(path: str | Path, overrides=(), **command_line) -> dict[str, str]:
    """{dotted key: where its value was set}: the config file (the one of the `extends:` chain whose value won,
    with "via extends: of <path>" when that is not `path` itself), else the command-line argument
    (`command_line_origins`, which wins: it is applied last). Keys are the leaves of each file (`data.loader_args`
    set as a mapping gives `data.loader_args.labels`, ...); look a key up with `origin_of`. `command_line`:
    `data_dir`, `max_epochs`, `seed` as `command_line_origins` takes them."""
    origins = {}
    top = Path(path).resolve()
    for file, content in config_chain(path):
        where = _shown_path(file) + ("" if file == top else f" (via extends: of {_shown_path(top)})")
        origins.update({key: where for key in _leaf_keys(content)})
    return {**origins, **command_line_origins(overrides, **command_line)}


def origin_of(origins: dict[str, str], key: str) -> str | None:
    """Where `key` (dotted) was set, from `config_origins`: its own entry or that of the section above it that set
    it whole (`--set data.loader_args={...}`); None when no file or argument set it (a default)."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in origins:
            return origins[".".join(parts[:end])]
    return None


def _leaf_keys(content: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in content.items():
        dotted = f"{prefix}{key}"
        keys += _leaf_keys(value, f"{dotted}.") if isinstance(value, dict) and value else [dotted]
    return keys


def _shown_path(path: Path) -> str:
    """`path` relative to the working directory when it is below it (as a user typed it), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_override(text: str) -> tuple[list[str], object]:
    """`"stage2.epochs=5"` → (["stage2", "epochs"], 5); the value is parsed as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE (e.g. stage2.epochs=5), got {text!r}.")
    return key.strip().split("."), yaml.safe_load(value)


def training_argument_names() -> set[str]:
    """Fields of `FrameAlignedTrainingArguments` a config may set under training:/stage1:/stage2:."""
    from dataclasses import fields

    from ..trainer.trainer import FrameAlignedTrainingArguments

    return {f.name for f in fields(FrameAlignedTrainingArguments) if f.init} - set(RESERVED_TRAINING_ARGUMENTS)


def passthrough_settings(config: dict, stage: str | None) -> dict:
    """The `TrainingArguments` fields set in `training:` and then `stage:` (the stage's win), by name; `training:`'s
    alone with `stage=None` (stage 0, whose section takes none)."""
    return {
        key: value
        for section in ("training",) + ((stage,) if stage else ())
        for key, value in config[section].items()
        if key not in DEFAULTS[section]
    }


def _check_keys(config: dict, defaults: dict, source: str, problems: list, prefix: tuple = ()):
    """Append a `Problem` for each unknown, reserved or misplaced key (naming the nearest valid key), and remove
    that key from `config`. `source` is unused (kept for callers)."""
    for key, value in list(config.items()):
        where = ".".join(prefix + (key,))
        problem = None
        if key not in defaults:
            problem = _unknown_key_problem(defaults, prefix, key, value, where)
        elif isinstance(defaults[key], dict) and value is not None and not isinstance(value, dict):
            problem = Problem(where, f"{where!r} must be a mapping, got {value!r}.", value)
        elif isinstance(defaults[key], dict) and not _free_form(prefix, key) and isinstance(value, dict):
            _check_keys(value, defaults[key], source, problems, prefix + (key,))
        if problem:
            problems.append(problem)
            del config[key]


def _free_form(prefix: tuple, key: str) -> bool:
    """Whether `prefix.key` is a free-form mapping (loader arguments, model config arguments): keys not checked."""
    section = schema.options(prefix[0]) if len(prefix) == 1 and prefix[0] in schema.SECTIONS else {}
    return key in section and section[key].meta["free_form"]


def _unknown_key_problem(defaults: dict, prefix: tuple, key: str, value, where: str) -> Problem | None:
    """None for a `TrainingArguments` field under training:/stage1:/stage2:, else what is wrong with the key."""
    passthrough = len(prefix) == 1 and prefix[0] in PASSTHROUGH_SECTIONS
    if passthrough and key in RESERVED_TRAINING_ARGUMENTS:
        message = f"{where} is set by train.py; set {RESERVED_TRAINING_ARGUMENTS[key]} instead (got {value!r})."
        return Problem(where, message, value, cause=None)
    if passthrough and key in training_argument_names():
        return None
    candidates = list(defaults) + (
        sorted(training_argument_names() | set(RESERVED_TRAINING_ARGUMENTS)) if passthrough else []
    )
    guess = nearest(key, candidates)
    message = f"unknown key {where!r}; " + (f"did you mean {'.'.join(prefix + (guess,))!r}? " if guess else "")
    message += f"expected one of {sorted(defaults)}" + (" or a TrainingArguments field." if passthrough else ".")
    return Problem(where, message, value)


def resolve_config(
    path: str | Path,
    overrides: list[str] = (),
    data_dir: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
) -> dict:
    """Defaults ← config file (with `extends`) ← `--set` overrides ← `--data-dir` / `--max-epochs` / `--seed`.

    Every problem (unknown keys; bad values, with what is allowed) is listed in one `ConfigError` (= `CheckError`).
    train.py also builds both stages' model configs and `TrainingArguments` first: `config_checks.check_config`.
    """
    config, problems, _ = resolve_config_problems(path, overrides, data_dir, max_epochs, seed)
    if problems:
        raise ConfigError(*attributed(problems, path, command_line_origins(overrides, data_dir, max_epochs, seed)))
    return config


def command_line_origins(
    overrides=(), data_dir: str | None = None, max_epochs: int | None = None, seed: int | None = None
) -> dict[str, str]:
    """{dotted key: the command-line argument that set it} ("stage2.epochs": "--set stage2.epochs=x"); the last
    `--set` of a key wins, as when they are applied."""
    origins = {}
    for text in overrides:
        keys, _ = parse_override(text)
        origins[".".join(keys)] = f"--set {text}"
    if data_dir is not None:
        origins["data.root"] = f"--data-dir {data_dir}"
    if seed is not None:
        origins["seed"] = f"--seed {seed}"
    if max_epochs is not None and max_epochs < 1:  # the only way --max-epochs makes a bad value
        origins.update({f"{stage}.epochs": f"--max-epochs {max_epochs}" for stage in schema.STAGES})
    return origins


def attributed(problems: list[Problem], path, origins: dict[str, str]) -> tuple[list[Problem], str]:
    """(the problems, each one a command-line argument caused named "(from --set KEY=VALUE)"; the source to name:
    the config file, "the command line", or both)."""
    result, from_command_line = [], 0
    for problem in problems:
        keys = set()  # each key involved and the sections above it: --set stage2=... covers stage2.x
        for key in (problem.key, *problem.related):
            parts = key.split(".")
            keys.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
        origin = next((o for k, o in origins.items() if k in keys), None)
        if origin is not None:
            from_command_line += 1
            problem = dataclasses.replace(problem, message=f"{problem.message} (from {origin})")
        result.append(problem)
    if not from_command_line:
        return result, str(path)
    return result, "the command line" if from_command_line == len(result) else f"{path} and the command line"


def resolve_config_problems(
    path: str | Path,
    overrides: list[str] = (),
    data_dir: str | None = None,
    max_epochs: int | None = None,
    seed: int | None = None,
) -> tuple[dict, list[Problem], set[tuple[str, str]]]:
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
    problems: list[Problem] = []
    _check_keys(config, DEFAULTS, source, problems)  # drops what it reports, so the checks below still run
    config = _merge(DEFAULTS, config)
    if data_dir is not None:
        config["data"]["root"] = data_dir
    if seed is not None:
        config["seed"] = seed
    if max_epochs is not None:
        for stage in schema.STAGES:
            epochs = coerce(schema.options(stage)["epochs"], config[stage]["epochs"])
            if isinstance(epochs, (int, float)) and not isinstance(epochs, bool):
                config[stage]["epochs"] = min(epochs, max_epochs)
    invalid: set[tuple[str, str]] = set()
    problems += check_values(config, invalid)
    return config, problems, invalid


def listing(source: str, problems: list) -> str:
    """The message of a `ConfigError` with several problems (grouped by cause)."""
    return report(problems, source)


def check_values(config: dict, invalid: set | None = None) -> list[Problem]:
    """Every bad value of the resolved config (key, value and what is allowed, from the schema), then the rules
    that tie keys together (`schema.CROSS_CHECKS`). Each bad value is reset to its default and its (section, key)
    added to `invalid`, so later checks neither trip on it again nor report it twice."""
    invalid = set() if invalid is None else invalid
    problems = []
    for section in ("", *schema.SECTIONS):
        settings = config if section == "" else config[section]
        for name, option in schema.options(section).items():
            value = settings[name] = coerce(option, settings[name])
            if not accepts(option, value):
                problems.append(
                    Problem(option.key, f"{option.key} must be {allowed_text(option)}, got {value!r}.", value)
                )
                settings[name] = copy.deepcopy(DEFAULTS[section][name] if section else DEFAULTS[name])
                invalid.add((section, name))
    reported = {".".join(filter(None, pair)) for pair in invalid}
    for keys, message in schema.cross_problems(config):
        if not reported.intersection(keys):  # a bad value, reset to its default, is not reported twice
            problems.append(Problem(keys[0], message, related=tuple(keys[1:])))
    return problems


# ---- the value of one option (from its declaration in schema.py) ----


def allowed_text(o: schema.Option) -> str:
    """What the option accepts, in words ("an integer >= 1", "null (all) or an integer >= 0", ...)."""
    base, nullable = base_type(o.type)
    meta = o.meta
    if meta["allowed"]:
        text = meta["allowed"]
    elif meta["choices"] is not None:
        text = f"one of {schema.choices_of(o)}"
    elif base is bool:
        text = "true or false"
    elif base in (int, float):
        text = "an integer" if base is int else "a number"
        low = meta["minimum"] if meta["minimum"] is not None else meta["above"]
        high = meta["maximum"] if meta["maximum"] is not None else meta["below"]
        if low is not None and high is not None:
            closing = "]" if meta["maximum"] is not None else ")"
            text += f" in {'[' if meta['minimum'] is not None else '('}{low}, {high}{closing}"
        elif low is not None:
            text += f" {'>=' if meta['minimum'] is not None else '>'} {low}"
        elif high is not None:
            text += f" {'<=' if meta['maximum'] is not None else '<'} {high}"
    else:
        text = {str: "a string", dict: "a mapping", list: "a list"}.get(base, base.__name__)
    if meta["required"]:
        return f"{text} (required)"
    if nullable:
        return f"null ({meta['null']}) or {text}" if meta["null"] else f"null or {text}"
    return text


def coerce(o: schema.Option, value):
    """PyYAML reads `1e-4` (no dot) as a string: a float option takes it as the number it means."""
    if base_type(o.type)[0] is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def accepts(o: schema.Option, value) -> bool:
    """Whether `value` (coerced) is allowed for the option."""
    base, nullable = base_type(o.type)
    if value is None:
        return nullable
    if o.meta["choices"] is not None:
        return value in schema.choices_of(o)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is float:
        ok = is_number
    elif base is int:
        ok = is_number and isinstance(value, int)
    else:
        ok = isinstance(value, union_types(o.type))  # `dict | str | None`: either
    if not ok or base not in (int, float):
        return ok
    meta = o.meta
    return not (
        (meta["minimum"] is not None and value < meta["minimum"])
        or (meta["above"] is not None and value <= meta["above"])
        or (meta["below"] is not None and value >= meta["below"])
        or (meta["maximum"] is not None and value > meta["maximum"])
    )


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
    "config_chain",
    "config_differences",
    "config_origins",
    "dump_config",
    "accepts",
    "allowed_text",
    "check_values",
    "coerce",
    "listing",
    "origin_of",
    "passthrough_settings",
    "read_config_file",
    "resolve_config",
    "resolve_config_problems",
    "attributed",
    "command_line_origins",
    "training_argument_names",
]
