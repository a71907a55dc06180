"""THE config schema of train.py: every option of every section, with its default, type, allowed values, where it
goes and one line of documentation. Everything else is derived from it:

- the YAML loader's defaults and key check (`run_config.py`: defaults ← file with `extends:` ← `--set`),
- the validation of each value (`run_config.check_values`, messages name the key, the value and what is allowed),
- the `TrainingArguments` keyword arguments of a stage (`training_argument_kwargs`) and the model-config keyword
  arguments of a stage (`model_kwargs`),
- the config recorded in `RUN/config.yaml` and `results.json`, shown in the model card's settings table,
- the reference page `docs/configuration.md` (`python -m modeling.training.config_reference --write`; a test
  compares).

How to add an option (ONE place, then its user):

1. Add a field to its section's dataclass below::

       my_option: float = option(0.5, "What it does, in one line (units).", minimum=0, to_model="my_option")

   The annotation is the type (`float` also accepts an integer; `X | None` accepts null). `option()` takes the
   default, the doc line, and optionally `choices` (a tuple, or the name of a function of this module returning
   them), `minimum` / `above` / `below` / `maximum` (>=, >, <, <=), `null` (what null means), `to_model` (the
   stage's model-config attribute it sets), `to_args` (the `TrainingArguments` field(s) it sets), `fallback` (the
   option whose value a null takes), `free_form` (a mapping whose keys are not checked) and `required` (null is
   reported by `cross_problems`). An option with neither `to_model` nor `to_args` is read by its user from the resolved
   config (`config[section][name]`), e.g. `config["stage2"]["cache_frozen_prefix"]`.
   A stage-2 default that differs from stage 1's goes in `STAGE2_DEFAULTS`.
2. Use it where it acts (the model config, the trainer, the experiment).
3. Regenerate the reference page: `python -m modeling.training.config_reference --write`.

No other file spells the option's name for it to be loaded, validated, passed on, recorded or documented
(tests/training/test_schema.py scans the code for option names spelled elsewhere).

This module needs only the standard library; choices that other modules own (poolings, loaders, fold strategies,
scheduler types) are looked up when a value is checked.
"""

import dataclasses
import typing
from dataclasses import dataclass, field


def option(
    default,
    doc: str,
    *,
    choices: tuple | str | None = None,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
    null: str | None = None,
    allowed: str | None = None,
    to_model: str | None = None,
    to_args: str | tuple[str, ...] = (),
    fallback: str | None = None,
    free_form: bool = False,
    required: bool = False,
):
    """A dataclass field declaring one config option (see the module docstring)."""
    metadata = {
        "doc": doc,
        "choices": choices,
        "minimum": minimum,
        "above": above,
        "below": below,
        "maximum": maximum,
        "null": null,
        "allowed": allowed,
        "to_model": to_model,
        "to_args": (to_args,) if isinstance(to_args, str) else tuple(to_args),
        "fallback": fallback,
        "free_form": free_form,
        "required": required,
    }
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# ---- choices owned elsewhere (looked up lazily: importing the schema stays cheap and torch-free) ----


def loader_names() -> list[str]:
    from ..data.catalog import LOADERS

    return list(LOADERS)


def fold_strategies() -> list[str]:
    from ..data.folds import FOLD_STRATEGIES

    return list(FOLD_STRATEGIES)


def pooling_types() -> list[str]:
    from ..configuration_frame_aligned import POOLING_TYPES

    return list(POOLING_TYPES)


def selection_metrics() -> list[str]:
    from .selection import SELECTION_METRICS

    return list(SELECTION_METRICS)


def scheduler_types() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    return [member.value for member in SchedulerType]


# ---- the sections ----


@dataclass
class DataSettings:
    """`data:` the corpus, which part of it, and how it is cut into folds."""

    loader: str | None = option(None, "Corpus loader.", choices="loader_names", required=True)
    root: str | None = option(
        None, "Corpus folder (relative to the working directory) or Hub dataset id (or --data-dir).", required=True
    )
    loader_args: dict | None = option(
        {}, "Extra keyword arguments of the loader (e.g. labels, split, speaker_column).", free_form=True
    )
    folds: str = option("leave_speakers_out", "Fold strategy (test = held-out speakers).", choices="fold_strategies")
    num_folds: int | None = option(
        None, "leave_speakers_out: number of speaker groups.", minimum=1, null="one group per speaker"
    )
    speakers: list | None = option(None, "Keep only these speakers.", null="all speakers")
    max_per_speaker: int | None = option(
        None, "Keep at most this many clips per speaker (classes interleaved).", minimum=1, null="all clips"
    )


@dataclass
class ModelSettings:
    """`model:` the backbone stage 1 starts from (exactly one of name_or_path and random_init)."""

    name_or_path: str | None = option(
        None, "Pre-trained backbone: Hub id (facebook/wav2vec2-base) or local folder.", null="use random_init"
    )
    random_init: dict | None = option(
        None,
        "Config arguments of a randomly initialised backbone "
        "(+ model_type: wav2vec2, hubert, wavlm, data2vec-audio, whisper).",
        null="use name_or_path",
        free_form=True,
    )
    config_overrides: dict | None = option(
        {}, "Extra model-config attributes for both stages (e.g. mask_time_prob, layerdrop).", free_form=True
    )
    lora: dict | None = option(None, "LoRA adapters instead of full fine-tuning, both stages: {r, alpha, dropout, "
        "target_modules, layers} (docs/training.md#lora).", null="full fine-tuning", free_form=True)  # fmt: skip


@dataclass
class TrainingSettings:
    """`training:` settings of both stages' Trainers. Also takes any `TrainingArguments` field (a stage's wins)."""

    full_determinism: bool = option(
        False, "Torch deterministic algorithms (slower on GPU).", to_args="full_determinism"
    )
    save_total_limit: int | None = option(
        2,
        "Trainer checkpoints kept per stage (the best one is always kept).",
        minimum=1,
        null="keep all",
        to_args="save_total_limit",
    )
    logging_steps: float = option(10, "Log the losses every this many steps.", above=0, to_args="logging_steps")
    dataloader_num_workers: int = option(
        0, "DataLoader worker processes.", minimum=0, to_args="dataloader_num_workers"
    )
    bf16: bool = option(False, "bfloat16 mixed precision.", to_args="bf16")
    fp16: bool = option(False, "float16 mixed precision.", to_args="fp16")
    activation_checkpointing: bool = option(
        False, "Recompute activations in backward (less memory, non-reentrant).", to_args="activation_checkpointing"
    )


@dataclass
class StageSettings:
    """`stage1:` / `stage2:` one stage's head, losses and optimisation. Also takes any `TrainingArguments` field."""

    pooling: str = option("attentive", "Utterance pooling of the head.", choices="pooling_types", to_model="pooling")
    epochs: float = option(1, "Training epochs.", above=0, to_args="num_train_epochs")
    batch_size: int = option(32, "Training batch size per device.", minimum=1, to_args="per_device_train_batch_size")
    eval_batch_size: int | None = option(
        None,
        "Evaluation batch size per device (backbones that see padding, e.g. wav2vec2-base's group norm: 1 clip).",
        minimum=1,
        null="= batch_size",
        to_args="per_device_eval_batch_size",
        fallback="batch_size",
    )
    gradient_accumulation_steps: int = option(
        1, "Batches per optimizer step.", minimum=1, to_args="gradient_accumulation_steps"
    )
    backbone_learning_rate: float = option(
        1e-4, "Learning rate of the backbone.", minimum=0, to_args=("learning_rate", "backbone_learning_rate")
    )
    # The head's rates are > 0: each stage starts a new (random) head, which a rate of 0 would leave untrained.
    pooling_learning_rate: float = option(
        5e-4, "Learning rate of the pooling head (new each stage).", above=0, to_args="pooling_learning_rate"
    )
    classifier_learning_rate: float = option(
        1e-4, "Learning rate of the classifier (new each stage).", above=0, to_args="classifier_learning_rate"
    )
    weight_decay: float = option(
        0.01, "AdamW weight decay (not on biases and norms).", minimum=0, to_args="weight_decay"
    )
    # transformers 5 has no `warmup_ratio`: its `warmup_steps` reads a float in [0, 1) as a fraction of the steps.
    warmup_ratio: float = option(
        0.1,
        "Linear warmup, as a fraction of the training steps.",
        minimum=0,
        below=1,
        to_args="warmup_steps",
        allowed="a number in [0, 1) (a fraction of the steps)",
    )
    lr_scheduler_type: str = option(
        "linear", "Learning-rate schedule after warmup.", choices="scheduler_types", to_args="lr_scheduler_type"
    )
    max_length_seconds: float | None = option(
        None,
        "Training crop length in seconds (a random window); evaluation uses whole clips.",
        above=0,
        null="whole clips",
    )
    num_trainable_layers: int | None = option(
        None,
        "Top transformer layers that train (the CNN is always frozen).",
        minimum=0,
        null="all",
        to_model="num_trainable_layers",
    )
    eal_weight: float = option(
        0.0, "λ_EAL, weight of the Emotional Attention Loss (CLS pooling only).", minimum=0, to_model="eal_weight"
    )
    fual_weight: float = option(
        0.0,
        "λ_FUAL, weight of the Frame-to-Utterance Alignment Loss (CLS pooling only).",
        minimum=0,
        to_model="fual_weight",
    )
    # EAL is softplus(m − cos(c, f_t)) and a cosine lies in [-1, 1]: at m <= -1 every frame already meets the margin
    # and the term is a near-constant tail (m = -3: between 0.018 and 0.127 whatever the frames, gradient <= 0.12);
    # m > 1 asks for a cosine no frame can reach. m = 1 (frames aligned with the CLS output) is reachable.
    eal_margin: float = option(
        0.8,
        "EAL margin m: the cosine similarity to the CLS output frames are pushed above (a cosine lies in [-1, 1]: "
        "at m <= -1 every frame already meets it, above 1 none can).",
        above=-1,
        maximum=1,
        to_model="eal_margin",
    )
    fual_detach_target: bool = option(
        False, "FUAL: no gradient through the utterance distribution (the target).", to_model="fual_detach_target"
    )
    cache_frozen_prefix: bool = option(
        False,
        "Stage 2: train from a cache of the frozen CNN + lower layers' output (about 1.6x faster epochs; no dropout "
        "below the first trainable layer, one fixed crop per clip).",
    )
    prefix_cache_dtype: str = option(
        "float16", "dtype of the frozen-prefix cache.", choices=("float32", "float16", "bfloat16")
    )
    prefix_cache_on_disk: bool = option(
        False, "Keep the frozen-prefix cache memory-mapped under fold<k>/stage2/prefix_cache (reused on resume)."
    )
    # Imbalance, soft labels, selection (docs/imbalance_and_soft_labels.md): the utterance loss only; EAL/FUAL as is.
    class_weights: dict | str | None = option(
        None, "Class-weighted utterance loss (inverse, inverse_sqrt: from the training counts).", null="no weights",
        allowed="inverse, inverse_sqrt or a mapping {class name: weight > 0}", to_args="class_weights",
    )  # fmt: skip
    focal_gamma: float = option(0.0, "Focal loss γ (0 = cross-entropy).", minimum=0, to_args="focal_gamma")
    soft_labels: bool = option(False, "Train on the corpus's label_distribution (votes).", to_args="soft_labels")
    class_balanced_sampling: bool = option(
        False, "Every class equally often per epoch (length-sorted).", to_args="class_balanced_sampling"
    )
    metric_for_best_model: str = option(
        "ua", "Validation metric selecting best/ (loss: lower is better).", choices="selection_metrics"
    )


@dataclass
class Stage1Settings(StageSettings):
    """`stage1:` as `StageSettings`, plus reusing another run's stage 1."""

    from_run: str | None = option(
        None,
        "Reuse fold<k>/stage1/best of this run directory instead of training stage 1 (Table 3 ablations).",
        null="train stage 1",
        allowed="a run directory",
    )


@dataclass
class Stage0Settings:
    """`stage0:` FLEA's continued pre-training before stage 1, on the fold's training speakers (docs/flea.md)."""

    enabled: bool = option(False, "Run stage 0 per fold; stage 1 starts from its backbone.")
    layer: int = option(9, "Layer whose frames are clustered (hidden_states[layer]; 0: input of layer 1).", minimum=0)
    clusters: int = option(50, "K-means clusters: the pseudo labels' classes.", minimum=2)
    mask_time_prob: float = option(0.2, "Frames masked, before overlaps.", above=0, below=1, to_model="mask_time_prob")
    mask_time_length: int = option(10, "Frames per masked span.", minimum=1, to_model="mask_time_length")
    num_trainable_layers: int | None = option(
        None, "Top layers that train (CNN always frozen).", minimum=0, null="all", to_model="num_trainable_layers"
    )
    epochs: float = option(1, "Training epochs (whole clips).", above=0, to_args="num_train_epochs")
    batch_size: int = option(8, "Training batch size per device.", minimum=1, to_args="per_device_train_batch_size")
    learning_rate: float = option(
        5e-5, "Learning rate (0 would hand stage 1 an unchanged backbone).", above=0, to_args="learning_rate"
    )
    warmup_ratio: float = option(0.1, "Linear warmup, share of steps.", minimum=0, below=1, to_args="warmup_steps")


# Stage 2's defaults where they differ from stage 1's (Table 2 of the paper).
STAGE2_DEFAULTS = {
    "pooling": "cls_attention",
    "backbone_learning_rate": 1e-5,
    "pooling_learning_rate": 3e-4,
    "classifier_learning_rate": 3e-4,
    "num_trainable_layers": 6,
    "eal_weight": 0.05,
    "fual_weight": 0.05,
}
Stage2Settings = dataclasses.make_dataclass(
    "Stage2Settings",
    [
        (f.name, f.type, dataclasses.field(default=STAGE2_DEFAULTS[f.name], metadata=f.metadata))
        for f in dataclasses.fields(StageSettings)
        if f.name in STAGE2_DEFAULTS
    ],
    bases=(StageSettings,),
    namespace={"__doc__": "`stage2:` as `StageSettings`, with the paper's stage-2 defaults (`STAGE2_DEFAULTS`)."},
)


@dataclass
class ExperimentSettings:
    """A train.py config: the seed and six sections."""

    seed: int = option(
        42,
        "Base seed; each (fold, stage) derives its own (seed + 1000·fold + …, numpy takes < 2³²).",
        minimum=0,
        maximum=2**31 - 1,
    )
    data: DataSettings = field(default_factory=DataSettings, metadata={"doc": DataSettings.__doc__})
    model: ModelSettings = field(default_factory=ModelSettings, metadata={"doc": ModelSettings.__doc__})
    training: TrainingSettings = field(default_factory=TrainingSettings, metadata={"doc": TrainingSettings.__doc__})
    stage0: Stage0Settings = field(default_factory=Stage0Settings, metadata={"doc": Stage0Settings.__doc__})
    stage1: Stage1Settings = field(default_factory=Stage1Settings, metadata={"doc": Stage1Settings.__doc__})
    stage2: Stage2Settings = field(default_factory=Stage2Settings, metadata={"doc": Stage2Settings.__doc__})


SECTIONS = {
    f.name: f.default_factory
    for f in dataclasses.fields(ExperimentSettings)
    if f.default is dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory)
}
STAGES = ("stage1", "stage2")
# Sections that also take any `TrainingArguments` field (a stage's value wins over training:'s).
PASSTHROUGH_SECTIONS = ("training", *STAGES)

# TrainingArguments fields train.py fixes: name → (the value of every run, None: stage.py computes it; what to set
# instead). stage.py sets the values, the config checks refuse the names (`reserved_training_arguments`).
FIXED_TRAINING_ARGUMENTS = {
    "output_dir": (None, "--output-dir"),
    "seed": (None, "the top-level seed"),
    "data_seed": (None, "the top-level seed"),
    "metric_for_best_model": (None, "stage1/stage2.metric_for_best_model (ua, wa, macro_f1 or loss)"),
    "greater_is_better": (None, "nothing: it follows stage1/stage2.metric_for_best_model (lower is better for loss)"),
    "load_best_model_at_end": (False, "nothing: train.py keeps the best checkpoint itself"),
    "remove_unused_columns": (False, "nothing: the collator needs the audio column"),
    "train_sampling_strategy": ("group_by_length", "nothing: batches are length-sorted (see class_balanced_sampling)"),
    "length_column_name": ("duration_s", "nothing: lengths are the corpus's `duration_s`"),
    "use_cpu": (None, "nothing: chosen from the hardware and torchrun"),
}


@dataclass(frozen=True)
class Option:
    """One declared option: its section and name, the dataclass field's type and metadata."""

    section: str
    name: str
    type: object
    default: object
    doc: str
    meta: dict

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


def _fields(cls) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    result = []
    for f in dataclasses.fields(cls):
        f.type = hints.get(f.name, f.type)
        result.append(f)
    return result


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def options(section: str) -> dict[str, Option]:
    """{name: Option} of a section ("" for the top level: `seed`)."""
    cls = ExperimentSettings if section == "" else SECTIONS[section]
    return {
        f.name: Option(section, f.name, f.type, _default(f), f.metadata.get("doc", ""), dict(f.metadata))
        for f in _fields(cls)
        if section != "" or f.name not in SECTIONS
    }


def all_options() -> list[Option]:
    return [o for section in ("", *SECTIONS) for o in options(section).values()]


def defaults() -> dict:
    """The resolved config of an empty file: every section with every default (a fresh dict each call)."""
    top = {name: o.default for name, o in options("").items()}
    return {**top, **{name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()}}


def reserved_training_arguments() -> dict[str, str]:
    """TrainingArguments fields a config may not set under training:/stage<s>: → what to set instead."""
    reserved = {name: instead for name, (_, instead) in FIXED_TRAINING_ARGUMENTS.items()}
    for section in PASSTHROUGH_SECTIONS:
        for o in options(section).values():
            reserved.update({name: o.name for name in o.meta["to_args"] if name != o.name})
    return reserved


# ---- reading the declarations ----


def choices_of(o: Option) -> list | None:
    choices = o.meta["choices"]
    if isinstance(choices, str):
        return globals()[choices]()
    return list(choices) if choices is not None else None


def cross_problems(config: dict) -> list[tuple[tuple[str, ...], str]]:
    """The rules that tie options together: [(the keys involved, the message)] of those a resolved config breaks."""
    data, model = config["data"], config["model"]
    problems = []
    if not data["loader"] or not data["root"]:
        problems.append((("data.loader", "data.root"), "data.loader and data.root are required (or pass --data-dir)."))
    if bool(model["name_or_path"]) == bool(model["random_init"]):
        message = (
            "set exactly one of model.name_or_path (a pre-trained backbone, e.g. facebook/wav2vec2-base) "
            f"and model.random_init (a randomly initialised backbone config), got {model}."
        )
        problems.append((("model.name_or_path", "model.random_init"), message))
    if config["stage1"]["pooling"] == "cls_attention":
        problems.append(
            (("stage1.pooling",), "stage1.pooling must not be cls_attention (stage 2 starts the CLS head).")
        )
    # class_weights; what the prefix cache cannot honour; EAL/FUAL weights that a pooling other than CLS ignores
    from ..trainer.loss_options import alignment_loss_problems, stage_loss_problems

    return problems + stage_loss_problems(config, STAGES) + alignment_loss_problems(config, STAGES)


# ---- what a stage passes on ----


def model_kwargs(settings: dict, section: str = "stage1") -> dict:
    """{model-config attribute: value} a stage's settings set (`to_model` options)."""
    return {o.meta["to_model"]: settings[o.name] for o in options(section).values() if o.meta["to_model"]}


def training_argument_kwargs(settings: dict, section: str) -> dict:
    """{TrainingArguments field: value} that a section's options set (`to_args`; a null takes its `fallback`)."""
    kwargs = {}
    for o in options(section).values():
        value = settings[o.name]
        if value is None and o.meta["fallback"]:
            value = settings[o.meta["fallback"]]
        kwargs.update({name: value for name in o.meta["to_args"]})
    return kwargs


# fmt: off
__all__ = [
    "DataSettings", "ExperimentSettings", "ModelSettings", "Option", "PASSTHROUGH_SECTIONS", "SECTIONS",
    "STAGE2_DEFAULTS", "Stage0Settings", "Stage1Settings", "Stage2Settings", "StageSettings", "TrainingSettings",
    "all_options", "choices_of", "cross_problems", "defaults", "model_kwargs", "options",
    "reserved_training_arguments", "training_argument_kwargs",
]
