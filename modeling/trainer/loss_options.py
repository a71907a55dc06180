"""The utterance-loss options of `FrameAlignedTrainer`: class weights, focal loss, soft (vote-distribution) targets.

They change the utterance term of the loss only (`modeling.losses.utterance_loss`); EAL and FUAL are computed as
before (docs/imbalance_and_soft_labels.md). Metrics stay on the consensus label (`labels`).

- `class_weights`: None; `"inverse"` / `"inverse_sqrt"` (from the training split's counts of the consensus label,
  normalised so the average training example weighs 1: `modeling.losses.class_weights_from_counts`); or explicit
  weights, one per class, as {class name: weight} (every class, nothing else).
- `focal_gamma`: γ >= 0 of the focal loss (0 = cross-entropy).
- `soft_labels`: train against each example's `label_distribution` (C probabilities in label-id order, summing
  to 1); evaluation losses use the consensus label.
"""

import json
import math
from collections.abc import Mapping, Sequence

import torch

from ..losses import CLASS_WEIGHTINGS, class_weights_from_counts, utterance_loss


LABEL_DISTRIBUTION = "label_distribution"  # the dataset column and batch key of soft targets
DISTRIBUTION_TOLERANCE = 1e-3  # |Σ_c p_c − 1| allowed in a label distribution


def parse_class_weights(value):
    """`class_weights` as given (None, a scheme name, a mapping, or the JSON text of a mapping from the command
    line) → None, the scheme, or a dict. Raises ValueError for anything else, naming what is allowed."""
    if value is None or isinstance(value, Mapping):
        return None if value is None else dict(value)
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return dict(json.loads(value))
        except ValueError as error:
            raise ValueError(f"class_weights: {value!r} is not valid JSON ({error}).") from error
    if isinstance(value, str) and value in CLASS_WEIGHTINGS:
        return value
    raise ValueError(
        f"class_weights must be null, one of {list(CLASS_WEIGHTINGS)} (from the training counts) or a mapping "
        f"{{class name: weight}}, got {value!r}."
    )


def loss_option_problems(class_weights, focal_gamma, label_names: Sequence[str] | None = None) -> list[str]:
    """Everything wrong with the loss options (empty: fine). Explicit weights are checked against `label_names`
    (the run's classes) when given: unknown classes, missing classes, and weights that are not numbers > 0."""
    problems = []
    if not isinstance(focal_gamma, (int, float)) or isinstance(focal_gamma, bool) or not focal_gamma >= 0:
        problems.append(f"focal_gamma must be a number >= 0 (0 = cross-entropy), got {focal_gamma!r}.")
    try:
        weights = parse_class_weights(class_weights)
    except ValueError as error:
        return problems + [str(error)]
    if not isinstance(weights, dict):
        return problems
    bad = {name: w for name, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float))}
    bad |= {name: w for name, w in weights.items() if name not in bad and not (w > 0 and math.isfinite(w))}
    if bad:
        problems.append(f"class_weights: weights must be finite numbers > 0, got {bad}.")
    if label_names is not None:
        unknown = [name for name in weights if name not in label_names]
        missing = [name for name in label_names if name not in weights]
        if unknown:
            problems.append(f"class_weights: unknown class(es) {unknown}; the classes are {list(label_names)}.")
        if missing:
            problems.append(f"class_weights: no weight for class(es) {missing}; one per class {list(label_names)}.")
    return problems


def alignment_loss_problems(config: dict, stages) -> list[tuple[tuple[str, ...], str]]:
    """[(keys, message)] of a resolved train.py config: an EAL or FUAL weight > 0 in a stage whose pooling is not
    `cls_attention`. Both losses are defined on the CLS pooling only (`auxiliary_losses` returns zeros for the
    others), so the weight would silently do nothing; stage 1 never uses `cls_attention`."""
    problems = []
    for stage in stages:
        settings = config[stage]
        for key, name in (("eal_weight", "EAL"), ("fual_weight", "FUAL")):
            if settings["pooling"] == "cls_attention" or not settings[key]:
                continue
            fix = " (stage 1 never uses cls_attention)" if stage == "stage1" else f" or {stage}.pooling: cls_attention"
            message = (
                f"{stage}.{key} is {settings[key]} but {stage}.pooling is {settings['pooling']!r}: {name} is defined "
                f"on cls_attention pooling only, so the term would be zero. Set {stage}.{key}: 0{fix}."
            )
            problems.append(((f"{stage}.{key}", f"{stage}.pooling"), message))
    return problems


def stage_loss_problems(config: dict, stages) -> list[tuple[tuple[str, ...], str]]:
    """[(keys, message)] of a resolved train.py config (`modeling.training.schema.cross_problems`): each stage's
    class_weights (a bad value is reset to null, as bad values are, so the TrainingArguments built next do not
    refuse it again), and soft labels or class-balanced sampling with the frozen-prefix cache (it replays cached
    batches without the corpus's rows)."""
    problems = []
    for stage in stages:
        settings = config[stage]
        found = loss_option_problems(settings["class_weights"], 0.0)
        problems += [((f"{stage}.class_weights",), f"{stage}.{message}") for message in found]
        settings["class_weights"] = None if found else settings["class_weights"]
        for name in ("soft_labels", "class_balanced_sampling"):
            if settings["cache_frozen_prefix"] and settings[name]:
                message = f"{stage}.{name} does not work with {stage}.cache_frozen_prefix; turn one of them off."
                problems.append(((f"{stage}.{name}", f"{stage}.cache_frozen_prefix"), message))
    return problems


def class_counts(labels: Sequence[int], num_classes: int) -> list[int]:
    """(C,) number of examples per label id (ids outside [0, C) are not counted)."""
    counts = [0] * num_classes
    for label in labels:
        if 0 <= int(label) < num_classes:
            counts[int(label)] += 1
    return counts


def resolve_class_weights(class_weights, label_names: Sequence[str], train_labels: Sequence[int] | None):
    """(C,) float32 weights in label-id order, or None: a scheme is computed from `train_labels` (the training
    split's consensus label ids); a mapping is put in label order. Raises ValueError (see `loss_option_problems`)."""
    weights = parse_class_weights(class_weights)
    if weights is None:
        return None
    if isinstance(weights, str):
        if train_labels is None:
            raise ValueError(f"class_weights={weights!r} needs the training dataset's labels to count the classes.")
        return class_weights_from_counts(class_counts(train_labels, len(label_names)), weights)
    problems = loss_option_problems(weights, 0.0, label_names)
    if problems:
        raise ValueError("; ".join(problems))
    return torch.tensor([float(weights[name]) for name in label_names], dtype=torch.float32)


def distribution_problems(
    rows, num_classes: int, where: str = "label_distribution", row_names: Sequence[str] | None = None
) -> list[str]:
    """One message per row of a label-distribution column that is not C numbers >= 0 summing to 1 (within
    `DISTRIBUTION_TOLERANCE`), naming the row (and its `row_names` entry, e.g. the audio file); at most 20 rows are
    named, then a count."""
    problems = []
    for row, values in enumerate(rows):
        problem = None
        if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            problem = f"expected {num_classes} probabilities, got {values!r}"
        elif len(values) != num_classes:
            problem = f"has {len(values)} values, expected {num_classes} (one per class)"
        elif any(not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 for v in values):
            problem = f"holds values that are not finite numbers >= 0: {list(values)}"
        elif abs(sum(values) - 1.0) > DISTRIBUTION_TOLERANCE:
            problem = f"sums to {sum(values):.6g}, not 1: {list(values)}"
        if problem:
            name = f" ({row_names[row]})" if row_names is not None else ""
            problems.append(f"{where}, row {row}{name}: {problem}.")
    if len(problems) > 20:
        problems = problems[:20] + [f"{where}: {len(problems) - 20} more row(s) with the same kinds of problem."]
    return problems


def dataset_loss_problems(stage_settings: dict[str, dict], dataset) -> list[str]:
    """Before training (train.py's checks): each stage's explicit class weights against the corpus's classes, and,
    where a stage trains on soft labels, the corpus's `label_distribution` column (present; C numbers >= 0 summing
    to 1 per row).

    Args:
        stage_settings: {"stage1": {...}, "stage2": {...}} with `class_weights`, `focal_gamma`, `soft_labels`.
        dataset: the corpus (`label` a ClassLabel; `audio` names the rows).
    """
    names = dataset.features["label"].names
    problems = []
    for stage, settings in stage_settings.items():
        found = loss_option_problems(settings.get("class_weights"), settings.get("focal_gamma", 0.0), names)
        problems += [f"{stage}.{problem}" for problem in found]
    soft = [stage for stage, settings in stage_settings.items() if settings.get("soft_labels")]
    if soft and LABEL_DISTRIBUTION not in dataset.column_names:
        problems.append(
            f"{'/'.join(soft)}.soft_labels: the corpus has no {LABEL_DISTRIBUTION!r} column (its loader does not "
            f"read annotator votes; columns: {dataset.column_names})."
        )
    elif soft:
        audio = [str(a.get("path") if isinstance(a, dict) else a) for a in dataset["audio"]]
        problems += distribution_problems(dataset[LABEL_DISTRIBUTION], len(names), row_names=audio)
    return problems


def wants_distributions(args) -> bool:
    """Whether `args` (any `TrainingArguments`, or None) asks for soft labels."""
    return bool(getattr(args, "soft_labels", False))


def with_distribution_column(collator):
    """`collator` with `distribution_column=LABEL_DISTRIBUTION` when it is our `AudioClassificationCollator`
    without one (a copy); any other collator as it is (it must put `label_distribution` in the batch itself)."""
    from dataclasses import replace

    from ..collator import AudioClassificationCollator

    if isinstance(collator, AudioClassificationCollator) and collator.distribution_column is None:
        return replace(collator, distribution_column=LABEL_DISTRIBUTION)
    return collator


class UtteranceLossMixin:
    """`FrameAlignedTrainer`'s utterance term from `args.class_weights`, `args.focal_gamma`, `args.soft_labels`."""

    def _prepare_inputs(self, inputs):
        """Evaluation batches go to the model as they are (`modeling.trainer.evaluation`): without the soft targets,
        which only training uses (metrics and the validation loss stay on the consensus label)."""
        inputs = super()._prepare_inputs(inputs)
        if LABEL_DISTRIBUTION in inputs and not self.model.training:
            inputs = {key: value for key, value in inputs.items() if key != LABEL_DISTRIBUTION}
        return inputs

    def utterance_loss_term(self, outputs, labels, distribution, training: bool) -> torch.Tensor:
        """The model's own CE when no option is set; else `utterance_loss` on the logits (fp32)."""
        args = self.args
        weighted = getattr(args, "class_weights", None) is not None
        soft = getattr(args, "soft_labels", False)
        gamma = getattr(args, "focal_gamma", 0.0) or 0.0
        if not (weighted or soft or gamma) or (labels is None and distribution is None):
            return outputs.loss
        if soft and training and distribution is None:
            raise ValueError(
                f"soft_labels=True but the training batch has no {LABEL_DISTRIBUTION!r}: the dataset needs a "
                f"{LABEL_DISTRIBUTION} column and the collator must pass it (AudioClassificationCollator("
                f"distribution_column={LABEL_DISTRIBUTION!r}))."
            )
        weights = self.utterance_class_weights(outputs.logits.device) if weighted else None
        return utterance_loss(
            outputs.logits.float(),
            labels,
            target_distribution=distribution.float() if soft and distribution is not None else None,
            class_weights=weights,
            focal_gamma=gamma,
        )

    def utterance_class_weights(self, device) -> torch.Tensor:
        """`args.class_weights` as a (C,) tensor, computed once (from `train_dataset`'s label column for a scheme)."""
        cached = getattr(self, "_utterance_class_weights", None)
        if cached is None:
            from ..configuration_frame_aligned import label_names

            config = self.accelerator.unwrap_model(self.model).config
            names = label_names(config.id2label)
            train_labels = None
            if isinstance(parse_class_weights(self.args.class_weights), str):
                train_labels = self._train_label_ids()
            cached = resolve_class_weights(self.args.class_weights, names, train_labels)
            self._utterance_class_weights = cached
        return cached.to(device)

    def _train_label_ids(self) -> list[int] | None:
        column = getattr(self.data_collator, "label_column", None) or "label"
        dataset = self.train_dataset
        if dataset is None:
            return None
        if column in (getattr(dataset, "column_names", None) or []):
            return [int(label) for label in dataset[column]]
        return [int(dataset[i][column]) for i in range(len(dataset))]


__all__ = [
    "alignment_loss_problems",
    "DISTRIBUTION_TOLERANCE",
    "LABEL_DISTRIBUTION",
    "UtteranceLossMixin",
    "class_counts",
    "dataset_loss_problems",
    "distribution_problems",
    "loss_option_problems",
    "parse_class_weights",
    "resolve_class_weights",
    "stage_loss_problems",
    "wants_distributions",
    "with_distribution_column",
]
