"""LoRA as configuration (`model.lora` in train.py configs): which Linear layers of the backbone get low-rank adapters,
the peft model of a stage, and the merged model its `best/` holds.

`model.lora = {r, alpha, dropout, target_modules, layers}` (defaults: `LORA_DEFAULTS`):

- `target_modules`: names of Linear layers inside one transformer layer of the backbone, as the backbone itself names
  them (`q_proj`, `attention.v_proj`, `feed_forward.intermediate_dense`; a name matches a module whose dotted name
  inside the layer equals it or ends with `.<name>`). They are resolved against the backbone's own modules, so the
  same names work for every backbone that has them (wav2vec 2.0, HuBERT, WavLM, data2vec-audio all call their
  attention projections `q_proj`, `k_proj`, `v_proj`, `out_proj`).
- `layers`: 0-based indices of the transformer layers that get adapters; null: every layer the stage trains (all of
  them, or the top `num_trainable_layers`). A layer the stage freezes (`num_trainable_layers`) cannot get one.
- the head (pooling and classifier) trains in full (peft's `modules_to_save`); everything else of the backbone stays
  exactly as loaded.

A stage trains `peft.PeftModel(stage's model)`: its Trainer checkpoints hold the adapter and the head
(`adapter_model.safetensors`), and its `best/` the merged model (a plain checkpoint of our class: pipelines, ONNX,
publishing and remote code use it as they use any other) with the adapter files in `best/adapter/` (`ADAPTER` in
rundir/layout.py). Stage 2 starts from stage 1's merged `best/` and trains a fresh adapter (see docs/training.md).

peft is imported only where a model is adapted: train.py without `model.lora` needs no peft.
"""

from ..data.problems import Problem


LORA_DEFAULTS = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "layers": None}
# The head trains in full: the frame-aligned model's pooling and classifier (see `parameter_groups`).
HEAD_MODULES = ["pooler", "classifier"]
KEY = "model.lora"
# peft's (LoraConfig) and common names of the same settings, for the hint of an unknown key.
PEFT_NAMES = {"rank": "r", "lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "target_layers": "layers"}


def lora_settings(value: dict) -> dict:
    """`model.lora` with its defaults filled in (`target_modules` given as one string becomes a list)."""
    settings = {**LORA_DEFAULTS, **value}
    if isinstance(settings["target_modules"], str):
        settings["target_modules"] = [settings["target_modules"]]
    return settings


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def lora_settings_problems(value: dict) -> list[tuple[tuple[str, ...], str]]:
    """[(keys, message)] of what is wrong with a `model.lora` mapping on its own (keys, types, ranges)."""
    import difflib

    problems = []
    for key in value:
        if key not in LORA_DEFAULTS:
            close = difflib.get_close_matches(key, list(LORA_DEFAULTS), n=1, cutoff=0.5)
            guess = PEFT_NAMES.get(key) or (close[0] if close else None)
            hint = f"did you mean '{KEY}.{guess}'? " if guess else ""
            message = f"unknown key '{KEY}.{key}'; {hint}expected one of {sorted(LORA_DEFAULTS)}."
            problems.append(((f"{KEY}.{key}",), message))
    settings = lora_settings(value)
    checks = {
        "r": (_is_int(settings["r"]) and settings["r"] >= 1, "an integer >= 1 (the adapter rank)"),
        "alpha": (_is_number(settings["alpha"]) and settings["alpha"] > 0, "a number > 0 (scaling = alpha / r)"),
        "dropout": (_is_number(settings["dropout"]) and 0 <= settings["dropout"] < 1, "a number in [0, 1)"),
        "target_modules": (
            isinstance(settings["target_modules"], list)
            and settings["target_modules"]
            and all(isinstance(name, str) and name.strip(". ") for name in settings["target_modules"]),
            "a non-empty list of module names inside a transformer layer (e.g. [q_proj, v_proj])",
        ),
        "layers": (
            settings["layers"] is None
            or (
                isinstance(settings["layers"], list)
                and settings["layers"]
                and all(_is_int(index) for index in settings["layers"])
                and len(set(settings["layers"])) == len(settings["layers"])
            ),
            "null (every trained layer) or a non-empty list of distinct 0-based layer indices",
        ),
    }
    for key, (ok, allowed) in checks.items():
        if not ok:
            problems.append(((f"{KEY}.{key}",), f"{KEY}.{key} must be {allowed}, got {settings[key]!r}."))
    return problems


def lora_config_problems(config: dict, stages=("stage1", "stage2")) -> list[tuple[tuple[str, ...], str]]:
    """[(keys, message)] of a resolved train.py config with `model.lora`: the mapping itself
    (`lora_settings_problems`), a stage that trains from the frozen-prefix cache, and peft not installed."""
    problems = lora_settings_problems(config["model"]["lora"])
    for stage in stages:
        if config[stage]["cache_frozen_prefix"]:
            message = (
                f"{stage}.cache_frozen_prefix = true cannot train {KEY} adapters: the cached stage trains a copy of "
                f"the model's upper layers (prefix_cache/model.py), not the peft model; set {stage}."
                "cache_frozen_prefix: false (LoRA already saves the frozen layers' gradients and optimizer state)."
            )
            problems.append(((f"{stage}.cache_frozen_prefix", KEY), message))
    try:
        import peft  # noqa: F401
    except ImportError:
        message = f"{KEY} needs peft, which is not installed: pip install 'frame-aligned-ser[lora]' (or peft)."
        problems.append(((KEY,), message))
    return problems


def transformer_layers(model) -> tuple[str, "torch.nn.ModuleList"]:  # noqa: F821
    """(dotted name in `model`, the ModuleList) of the backbone's transformer layers: the `*.layers` ModuleList with
    `config.num_hidden_layers` entries (`wav2vec2.encoder.layers`, `wavlm.encoder.layers`, ...). Raises ValueError
    when the backbone has none."""
    import torch

    count = model.config.num_hidden_layers
    found = [
        (name, module)
        for name, module in model.base_model.named_modules(prefix=model.base_model_prefix)
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] == "layers" and len(module) == count
    ]
    if not found:
        raise ValueError(f"{type(model).__name__}: no ModuleList '*.layers' of {count} transformer layers found.")
    return min(found, key=lambda item: len(item[0]))


def linear_names(layer) -> list[str]:
    """Dotted names of the Linear modules inside one transformer layer (what `target_modules` may name)."""
    import torch

    return [name for name, module in layer.named_modules() if isinstance(module, torch.nn.Linear)]


def adapted_layers(settings: dict, num_layers: int, num_trainable_layers: int | None) -> list[int]:
    """The layer indices that get adapters: `layers`, or every layer the stage trains."""
    first_trained = num_layers - (num_layers if num_trainable_layers is None else num_trainable_layers)
    return list(range(first_trained, num_layers)) if settings["layers"] is None else list(settings["layers"])


def uncalled_linears(model, names: list[str]) -> list[str]:
    """Those of `names` (Linear modules of `model`) whose forward does not run in a forward pass of 1 s of silence:
    a layer that reads such a module's weight directly (WavLM's attention hands `q_proj.weight`, `k_proj.weight`,
    `v_proj.weight` and `out_proj.weight` to `F.multi_head_attention_forward`) would bypass a LoRA adapter there,
    which would never train. Runs on the model's device (the meta device costs nothing); restores its mode."""
    import torch

    modules = dict(model.named_modules())
    called = set()
    hooks = [modules[name].register_forward_hook(lambda *_, name=name: called.add(name)) for name in names]
    device = next(model.parameters()).device
    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 16000, device=device))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    return [name for name in names if name not in called]


def refuse_inert_adapters(model) -> None:
    """Raise ValueError when a peft LoRA layer of `model` (a module with `lora_A`; any path: `model.lora`,
    `get_peft_model` by hand, a model built by `model_init`) is never called by the model's forward: its adapter
    would stay at zero and the model would train as if it were not there (WavLM's attention reads `q_proj.weight` etc.
    directly). Checked once per model, by one forward of 1 s of silence (`uncalled_linears`)."""
    if getattr(model, "_frame_aligned_adapters_checked", False):
        return
    names = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    inert = sorted(uncalled_linears(model, names)) if names else []
    if inert:
        shown = ", ".join(inert[:4]) + (f" and {len(inert) - 4} more" if len(inert) > 4 else "")
        raise ValueError(
            f"LoRA adapters on {shown}: {type(model).__name__}'s forward never calls these modules (it reads their "
            "weights directly), so the adapters would never train. Target modules the layers call (on WavLM: "
            r"feed_forward\.(intermediate_dense|output_dense)); see docs/trainer_recipes.md#lora-with-peft."
        )
    model._frame_aligned_adapters_checked = True


def target_problems(model, settings: dict, stage: str = "stage1") -> list[Problem]:
    """What keeps `settings` from adapting `model` (a stage's model, before peft): target names that match no Linear
    layer (naming those that exist), layers outside the backbone or frozen by the stage's `num_trainable_layers`,
    and settings LoRA cannot honour (the weighted layer sum's weights). Empty: `lora_config` works."""
    config = model.config
    layers_name, layers = transformer_layers(model)
    problems = []
    available = linear_names(layers[0])
    for name in settings["target_modules"]:
        if not any(candidate == name or candidate.endswith(f".{name}") for candidate in available):
            message = (
                f"{KEY}.target_modules: {name!r} names no Linear layer of {type(model).__name__}'s transformer layers "
                f"({layers_name}.<i>); they have: {', '.join(available)}."
            )
            problems.append(Problem(f"{KEY}.target_modules", message, name))
    count, trainable = config.num_hidden_layers, config.num_trainable_layers
    first_trained = count - (count if trainable is None else trainable)
    indices = adapted_layers(settings, count, trainable)
    outside = [index for index in indices if not 0 <= index < count]
    if outside:
        message = f"{KEY}.layers: {outside} outside the backbone's {count} transformer layers (0–{count - 1})."
        problems.append(Problem(f"{KEY}.layers", message, outside))
    frozen = [index for index in indices if 0 <= index < first_trained]
    if frozen:
        message = (
            f"{KEY}.layers: {frozen} frozen in {stage} by {stage}.num_trainable_layers = {trainable} (its trained "
            f"layers: {first_trained}–{count - 1}); drop them from {KEY}.layers, or raise "
            f"{stage}.num_trainable_layers (null: all)."
        )
        problems.append(Problem(f"{KEY}.layers", message, frozen))
    if not indices:
        message = f"{stage}.num_trainable_layers = {trainable} leaves no transformer layer for the LoRA adapters."
        problems.append(Problem(f"{stage}.num_trainable_layers", message, trainable))
    resolved = target_module_names(model, settings) if not problems else []
    every = [f"{layers_name}.{indices[0]}.{name}" for name in available] if resolved else []
    uncalled = set(uncalled_linears(model, list(dict.fromkeys(resolved + every))))

    def in_layer(name: str) -> str:  # "<layers_name>.<index>.<name in the layer>" → the name in the layer
        return name[len(layers_name) + 1 :].split(".", 1)[1]

    inert = sorted({in_layer(name) for name in resolved if name in uncalled})
    if inert:
        usable = [in_layer(name) for name in every if name not in uncalled]
        message = (
            f"{KEY}.target_modules: {type(model).__name__}'s transformer layers read the weights of "
            f"{', '.join(inert)} directly instead of calling the module, so a LoRA adapter there would never train; "
            f"choose among {', '.join(usable)}."
        )
        problems.append(Problem(f"{KEY}.target_modules", message, inert))
    if config.use_weighted_layer_sum:
        message = (
            f"{KEY} with use_weighted_layer_sum is not supported: peft saves whole modules (the head), and the layer "
            "weights are a single parameter of the model; train without the weighted layer sum, or without LoRA."
        )
        problems.append(Problem(KEY, message))
    return problems


def target_module_names(model, settings: dict) -> list[str]:
    """Full dotted names (in `model`) of the Linear layers that get adapters (see `target_problems`)."""
    layers_name, layers = transformer_layers(model)
    names = []
    for index in adapted_layers(settings, model.config.num_hidden_layers, model.config.num_trainable_layers):
        names += [
            f"{layers_name}.{index}.{candidate}"
            for candidate in linear_names(layers[index])
            if any(candidate == name or candidate.endswith(f".{name}") for name in settings["target_modules"])
        ]
    return names


def lora_config(model, settings: dict):
    """The `peft.LoraConfig` of `settings` for `model`: adapters on `target_module_names`, the head in full.
    Raises ValueError listing every problem of `target_problems`."""
    from peft import LoraConfig

    problems = target_problems(model, settings)
    if problems:
        raise ValueError("; ".join(problem.message for problem in problems))
    return LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=target_module_names(model, settings),
        modules_to_save=list(HEAD_MODULES),
    )


def with_lora(model, value: dict):
    """`peft.get_peft_model(model, lora_config(...))`: the base frozen, the adapters and the head trainable."""
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, lora_settings(value)))


def save_merged(base, adapter_dir, output_dir, adapter_subfolder: str):
    """Apply the adapter in `adapter_dir` (a Trainer checkpoint of a LoRA stage) to `base` (the stage's model as it
    started, built again), save the adapter files to `output_dir/adapter_subfolder` and the merged model (a plain
    checkpoint of `base`'s class) to `output_dir`; returns the merged model."""
    from peft import PeftModel

    adapted = PeftModel.from_pretrained(base, adapter_dir)
    adapted.save_pretrained(f"{output_dir}/{adapter_subfolder}")
    merged = adapted.merge_and_unload(safe_merge=True)
    merged.save_pretrained(output_dir)
    return merged


__all__ = [
    "HEAD_MODULES",
    "LORA_DEFAULTS",
    "adapted_layers",
    "linear_names",
    "lora_config",
    "lora_config_problems",
    "lora_settings",
    "lora_settings_problems",
    "save_merged",
    "target_module_names",
    "target_problems",
    "transformer_layers",
    "uncalled_linears",
    "with_lora",
]
