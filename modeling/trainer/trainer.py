"""`FrameAlignedTrainer`: the Trainer of both stages.

Adds λ_EAL·EAL + λ_FUAL·FUAL to the model's cross-entropy (CLS pooling only), logs the three terms, builds
AdamW with separate learning rates for backbone / pooling / classifier, and freezes what the config says.
"""

from dataclasses import dataclass, field

import torch
from transformers import Trainer, TrainingArguments

from ..data.audio_columns import DURATION_COLUMN, LEGACY_DURATION_COLUMN, readable_audio
from ..losses import emotional_attention_loss, frame_utterance_alignment_loss
from ..rundir import reader
from ..rundir.faults import fault_point
from .checkpointing import VerifiedCheckpointMixin
from .evaluation import evaluation_loop_like_scoring
from .lora import refuse_inert_adapters
from .loss_options import (
    LABEL_DISTRIBUTION,
    UtteranceLossMixin,
    loss_option_problems,
    parse_class_weights,
    wants_distributions,
    with_distribution_column,
)
from .sampling import LengthSortedSamplerMixin


LOSS_TERMS = ("loss_ce", "loss_eal", "loss_fual")
PARAMETER_GROUPS = ("backbone", "pooling", "classifier")


@dataclass
class FrameAlignedTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus one learning rate and weight decay per parameter group.

    Unset values fall back to `learning_rate` / `weight_decay`. Table 2 of the paper: stage 1 backbone 1e-4,
    pooling 5e-4, classifier 1e-4; stage 2 backbone 1e-5, pooling 3e-4, classifier 3e-4; weight decay 1e-2.
    """

    backbone_learning_rate: float | None = field(default=None, metadata={"help": "LR of the wav2vec2 backbone."})
    pooling_learning_rate: float | None = field(default=None, metadata={"help": "LR of the pooling head."})
    classifier_learning_rate: float | None = field(default=None, metadata={"help": "LR of the classifier."})
    backbone_weight_decay: float | None = field(default=None, metadata={"help": "Weight decay of the backbone."})
    pooling_weight_decay: float | None = field(default=None, metadata={"help": "Weight decay of the pooling head."})
    classifier_weight_decay: float | None = field(default=None, metadata={"help": "Weight decay of the classifier."})
    # The utterance loss (modeling/trainer/loss_options.py, docs/imbalance_and_soft_labels.md); EAL/FUAL unchanged.
    class_weights: dict | str | None = field(
        default=None,
        metadata={"help": "inverse | inverse_sqrt (from the training counts) | {class name: weight} (JSON)."},
    )
    focal_gamma: float = field(default=0.0, metadata={"help": "Focal loss γ >= 0 (0 = cross-entropy)."})
    soft_labels: bool = field(default=False, metadata={"help": "Train against the label_distribution column."})
    class_balanced_sampling: bool = field(
        default=False, metadata={"help": "Every class equally often per epoch (ClassBalancedSampler)."}
    )

    def __post_init__(self):
        problems = loss_option_problems(self.class_weights, self.focal_gamma)
        if problems:
            raise ValueError("; ".join(problems))
        self.class_weights = parse_class_weights(self.class_weights)  # JSON text from a command line → dict
        super().__post_init__()

    eval_longest_first: bool | None = field(
        default=None,
        metadata={
            "help": "Evaluate and predict longest clip first (`modeling.longest_first`: little padding, the order "
            "train.py's scores use). None: when train_sampling_strategy is group_by_length."
        },
    )


def parameter_group_of(name: str) -> str:
    """'backbone', 'pooling' or 'classifier' for a parameter name of a `*ForFrameAlignedClassification` (used where
    the model's own modules cannot be found: see `parameter_groups`)."""
    if name.startswith("pooler."):
        return "pooling"
    if name.startswith("classifier."):
        return "classifier"
    return "backbone"


def frame_aligned_model(model):
    """The model that knows how to freeze itself (a `*ForFrameAlignedClassification`, or the frozen-prefix model)
    inside the wrappers a Trainer user may bring: peft (`get_base_model`), `torch.compile` (`_orig_mod`), DDP
    (`module`). None when there is none. The check is on the class: peft's wrappers forward unknown attributes."""
    for _ in range(8):
        if model is None or hasattr(type(model), "freeze_for_training"):
            return model
        if hasattr(type(model), "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            model = model.module
        else:
            return None
    return None


def freeze_for_training(model) -> None:
    """`freeze_for_training()` of the frame-aligned model inside `model` (see `frame_aligned_model`), if any."""
    inner = frame_aligned_model(model)
    if inner is not None:
        inner.freeze_for_training()
        refuse_inert_adapters(inner)  # peft adapters the forward never calls would silently train nothing


def parameter_groups(model) -> dict[int, str]:
    """{id(parameter): 'pooling' | 'classifier'} from the frame-aligned model's own `pooler` and `classifier`
    modules, whatever the parameters are called in `model` (peft prefixes them with `base_model.model.` and wraps
    `modules_to_save` copies; `torch.compile` with `_orig_mod.`). Parameters not listed are the backbone's."""
    inner = frame_aligned_model(model)
    groups = {}
    for group, attribute in (("pooling", "pooler"), ("classifier", "classifier")):
        module = getattr(inner, attribute, None)
        if isinstance(module, torch.nn.Module):
            groups.update({id(parameter): group for parameter in module.parameters()})
    return groups


def auxiliary_losses(outputs, config) -> dict[str, torch.Tensor]:
    """EAL and FUAL of a model output (zero tensors for poolings other than `cls_attention`).

    A term whose λ is 0 (the Table 3 ablations) is still computed for the logs, but without a graph.
    Both are computed in fp32 from fp32 copies of the outputs: under CPU bf16 autocast (a caller's `torch.autocast`;
    the Trainer's own forward already returns fp32), log-softmax, logsumexp and cosine similarity of bf16 outputs stay
    in bf16, and FUAL (a KL between nearly equal distributions) came out ~25 % off. No op of the losses is one that
    autocast lowers to bf16 (matmul, linear, conv), so fp32 inputs keep them in fp32.
    """
    if not config.uses_alignment_losses:
        zero = outputs.logits.new_zeros(())
        return {"loss_eal": zero, "loss_fual": zero}
    utterance, frames, logits, frame_logits, frame_weights = (
        tensor.float()
        for tensor in (
            outputs.utterance_embedding,
            outputs.frame_embeddings,
            outputs.logits,
            outputs.frame_logits,
            outputs.frame_weights,
        )
    )
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.eal_weight != 0):
        eal = emotional_attention_loss(utterance, frames, outputs.frame_mask, config.eal_margin)
    with torch.set_grad_enabled(torch.is_grad_enabled() and config.fual_weight != 0):
        fual = frame_utterance_alignment_loss(
            logits, frame_logits, frame_weights, outputs.frame_mask, detach_target=config.fual_detach_target
        )
    return {"loss_eal": eal, "loss_fual": fual}


def data_parallel_mean(per_device: torch.Tensor, labels: torch.Tensor, model: torch.nn.DataParallel) -> torch.Tensor:
    """The batch mean of a mean-reduced loss that `nn.DataParallel` returns once per device (shape (devices,)).

    `python train.py` (no torchrun) on a machine with several GPUs makes the Trainer wrap the model in
    `nn.DataParallel`: each replica gets a `torch.chunk` of the batch and returns its own mean cross-entropy, gathered
    into a vector. The Trainer's `loss.mean()` would weigh a short last chunk (5 clips on 2 GPUs: 3 and 2) like a
    full one; this weighs each device's mean by its number of clips, which gives the single-device batch mean.
    The other outputs (logits, embeddings, frame weights) are gathered along the batch, so EAL and FUAL computed
    from them are already the batch's.
    """
    if per_device.dim() == 0:
        return per_device
    devices = len(model.device_ids) or per_device.numel()
    sizes = [len(part) for part in labels.chunk(devices)]
    if len(sizes) != per_device.numel():
        raise ValueError(f"nn.DataParallel returned {per_device.numel()} losses for {len(sizes)} chunks of the batch.")
    counts = torch.tensor(sizes, dtype=per_device.dtype, device=per_device.device)
    return (per_device * counts).sum() / counts.sum()


class NonFiniteError(FloatingPointError):
    """A NaN or Inf in a loss, the logits or the embeddings: training stops (`FrameAlignedTrainer`)."""


def finite_flags(loss: torch.Tensor, outputs) -> tuple[list[str], torch.Tensor]:
    """(names, flags): for each of loss, logits, utterance and frame embeddings (valid frames only), whether it holds
    only finite values, as one bool tensor on the device (no host synchronisation: no boolean indexing, nothing read).
    """
    frames = outputs.frame_embeddings
    if frames is not None and outputs.frame_mask is not None:  # padded frames may hold anything
        frames = frames.detach().masked_fill(~outputs.frame_mask[..., None], 0)
    tensors = {
        "loss": loss,
        "logits": outputs.logits,
        "utterance_embedding": outputs.utterance_embedding,
        "frame_embeddings": frames,
    }
    tensors = {name: tensor for name, tensor in tensors.items() if tensor is not None}
    return list(tensors), torch.stack([torch.isfinite(tensor.detach()).all() for tensor in tensors.values()])


def non_finite_values(loss: torch.Tensor, outputs) -> list[str]:
    """Names of the tensors among loss, logits, utterance and frame embeddings that hold a NaN or Inf (one host
    synchronisation: see `finite_flags` for the check without one)."""
    names, flags = finite_flags(loss, outputs)
    return [name for name, ok in zip(names, flags.tolist()) if not ok]


def run_location(output_dir: str) -> str:
    """ "fold1, stage2" for a stage's output directory `RUN/fold1/stage2` (else the directory itself)."""
    return reader.run_location(output_dir) or f"output directory {output_dir}"


class LossTermAverager:
    """Running sums of the loss terms between two log calls, kept apart for training and evaluation.

    The sums stay on the device (`add` reads nothing: no host synchronisation per step); `pop` reads them once.
    """

    def __init__(self):
        self.sums: dict[str, dict[str, torch.Tensor]] = {"train": {}, "eval": {}}
        self.counts = {"train": 0, "eval": 0}

    def add(self, split: str, terms: dict[str, torch.Tensor]):
        for name, value in terms.items():
            value = value.detach().float()
            total = self.sums[split].get(name)
            self.sums[split][name] = value if total is None else total + value
        self.counts[split] += 1

    def pop_tensor(self, split: str) -> dict[str, torch.Tensor]:
        """The averages as 0-d tensors on the device (nothing read), and a new window."""
        count = self.counts[split]
        averages = {name: total / count for name, total in self.sums[split].items()} if count else {}
        self.sums[split], self.counts[split] = {}, 0
        return averages

    def pop(self, split: str) -> dict[str, float]:
        averages = self.pop_tensor(split)
        if not averages:
            return {}
        return dict(zip(averages, torch.stack(list(averages.values())).tolist()))


class FrameAlignedTrainer(VerifiedCheckpointMixin, UtteranceLossMixin, LengthSortedSamplerMixin, Trainer):
    """Trainer for every `*ForFrameAlignedClassification` (wav2vec 2.0, HuBERT, WavLM, data2vec-audio).

    - loss = CE + λ_EAL·EAL + λ_FUAL·FUAL (λ from the model config; auxiliary terms only for `cls_attention`);
      the utterance term CE can be class-weighted, focal or against soft targets (`class_weights`, `focal_gamma`,
      `soft_labels`: `modeling.trainer.loss_options`), logged as `loss_ce` all the same;
      `loss_ce`, `loss_eal`, `loss_fual` are logged as averages over each logging window (and `eval_loss_*`).
    - AdamW with parameter groups backbone / pooling / classifier (see `FrameAlignedTrainingArguments`); biases and
      norm weights get no weight decay, as in `Trainer`.
    - a NaN/Inf loss, logits or embeddings (training or evaluation) raises `NonFiniteError` naming the fold, stage
      and step, instead of training on (and failing much later in a metric or a plot): at once on the CPU, at the
      next logging step / checkpoint save on an accelerator (`defer_non_finite_check`: no host sync per step).
    - evaluation gives the final scoring's predictions (its batches, fp32), also under DDP and bf16/fp16
      (`evaluation.py`); `nn.DataParallel`'s per-device losses are combined into the batch mean.
    - `freeze_for_training()` (CNN frozen, lower layers per `num_trainable_layers`; it only ever turns
      `requires_grad` off and keeps a peft adapter's trainable set) is applied on every path: a model passed in
      (also peft-wrapped or `torch.compile`d), one built by `model_init` (so `hyperparameter_search` too), and again
      when training starts (after a resume, or a model swapped in).
    - `train_sampling_strategy="group_by_length"` sorts the whole training set by length each epoch
      (`modeling.trainer.sampling.LengthSortedSampler`: < 1 % padding on real corpora, vs. 4–8 % for transformers'
      mega-batch grouping; see `benchmarks/`); lengths come from `length_column_name`, a `duration_s` column (a legacy
      `duration` one too) or the audio headers, so any dataset with an audio column works.
    - evaluation is its own pass: `eval_data_collator` (e.g. whole clips, where training uses random crops) serves
      `evaluate` and `predict`, batched longest first (`eval_longest_first`, `modeling.longest_first`): the
      validation UA a checkpoint is selected on is the one train.py's scoring reports.
    - `datasets` `Audio()` columns work decoded or not, with or without torchcodec (without it they are read as
      `Audio(decode=False)`; see `modeling.data.audio_columns.readable_audio`), and `remove_unused_columns=True`
      keeps the collator's audio and label columns.
    """

    # When a training step's non-finite check is read: None = at once on the CPU (reading costs nothing there), at the
    # next logging step / checkpoint save / end of training on an accelerator (reading at once would make the host
    # wait for the device in every step). True / False force the deferred / immediate check.
    defer_non_finite_check: bool | None = None

    def __init__(self, model=None, args=None, eval_data_collator=None, **kwargs):
        """`eval_data_collator`: the collator of `evaluate` / `predict` (default: `data_collator`); other arguments as
        `transformers.Trainer`."""
        freeze_for_training(model)
        if wants_distributions(args):  # our collator passes the distributions on when asked
            kwargs["data_collator"] = with_distribution_column(kwargs.get("data_collator"))
        super().__init__(model=model, args=args, **kwargs)
        self.eval_data_collator = eval_data_collator
        self.loss_terms = LossTermAverager()
        self._pending_finite_checks: list[tuple[int, list[str], torch.Tensor]] = []

    def _with_eval_collator(self, build, dataset):
        if self.eval_data_collator is None:
            return build(dataset)
        train_collator, self.data_collator = self.data_collator, self.eval_data_collator
        try:
            return build(dataset)
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)

    def call_model_init(self, trial=None):
        """`model_init`'s model, frozen as the config says (the path `hyperparameter_search` takes)."""
        model = super().call_model_init(trial)
        freeze_for_training(model)
        return model

    def train(self, *args, **kwargs):
        freeze_for_training(self.model)  # idempotent (it only turns requires_grad off); model_init re-freezes its own
        self._pending_finite_checks = []
        output = super().train(*args, **kwargs)
        self._raise_on_pending_non_finite()  # the steps after the last logging step
        return output

    def _remove_unused_columns(self, dataset, description=None):
        dataset = readable_audio(dataset)
        if not self.args.remove_unused_columns:
            return dataset
        self._set_signature_columns_if_needed()
        collator = self.data_collator
        needed = [getattr(collator, "audio_column", None), getattr(collator, "label_column", None)]
        needed += [self.args.length_column_name, DURATION_COLUMN, LEGACY_DURATION_COLUMN]
        needed += [getattr(collator, "distribution_column", None)]
        self._signature_columns = list(dict.fromkeys(self._signature_columns + [c for c in needed if c]))
        return super()._remove_unused_columns(dataset, description)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        distribution = inputs.get(LABEL_DISTRIBUTION)
        outputs = model(**{key: value for key, value in inputs.items() if key != LABEL_DISTRIBUTION})
        config = self.accelerator.unwrap_model(model).config
        if isinstance(model, torch.nn.DataParallel) and outputs.loss is not None:
            outputs.loss = data_parallel_mean(outputs.loss, inputs["labels"], model)
        # the utterance term: the model's CE, or weighted / focal / soft (`loss_options`); EAL and FUAL as they are
        outputs.loss = self.utterance_loss_term(outputs, inputs.get("labels"), distribution, model.training)
        loss, terms = self.loss_and_terms(outputs, config)
        self._check_finite(loss, outputs, model.training)
        self.loss_terms.add("train" if model.training else "eval", terms)
        if return_outputs:
            outputs.loss = loss
            return loss, outputs
        return loss

    def loss_and_terms(self, outputs, config) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(CE + λ_EAL·EAL + λ_FUAL·FUAL, {"loss_ce", "loss_eal", "loss_fual"}) of a model output."""
        terms = {"loss_ce": outputs.loss, **auxiliary_losses(outputs, config)}
        loss = terms["loss_ce"] + config.eal_weight * terms["loss_eal"] + config.fual_weight * terms["loss_fual"]
        return loss, terms

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """Evaluation with the final scoring's batches and precision, also under DDP and bf16/fp16
        (`evaluation.evaluation_loop_like_scoring`); FSDP and DeepSpeed (sharded weights) keep transformers' loop."""
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        return evaluation_loop_like_scoring(self, dataloader, metric_key_prefix)  # callbacks see its batches

    def _check_finite(self, loss: torch.Tensor, outputs, training: bool):
        step = self.state.global_step + (1 if training else 0)
        if training:  # test-only: a crash test makes one process fail here (`faults.fault_point`)
            fault_point(f"train:step:rank{self.args.process_index}:step{step}")
        names, flags = finite_flags(loss, outputs)
        defer = self.defer_non_finite_check
        if defer is None:
            defer = self.args.device.type != "cpu"
        if training and defer:
            self._pending_finite_checks.append((step, names, flags))
            return
        self._raise_if_non_finite([(step, names, flags)], training)

    def _raise_on_pending_non_finite(self):
        """Read the deferred non-finite checks of the training steps since the last read (one host sync)."""
        pending, self._pending_finite_checks = self._pending_finite_checks, []
        if pending:
            self._raise_if_non_finite(pending, training=True)

    def _raise_if_non_finite(self, checks: list[tuple[int, list[str], torch.Tensor]], training: bool):
        all_finite = torch.stack([flags.all() for _, _, flags in checks]).tolist()
        for (step, names, flags), ok in zip(checks, all_finite):
            if ok:
                continue
            bad = [name for name, finite in zip(names, flags.tolist()) if not finite]
            what = f"training step {step}" if training else f"evaluation after step {step}"
            raise NonFiniteError(
                f"{run_location(self.args.output_dir)}, {what}: non-finite values (NaN or Inf) in {', '.join(bad)}. "
                "Training stopped; lower the learning rate, check the input audio, or use bf16 instead of fp16."
            )

    def before_checkpoint(self):
        self._raise_on_pending_non_finite()  # never save a model trained on non-finite values

    def log(self, logs: dict[str, float], *args, **kwargs):
        is_eval = any(key.startswith("eval_") for key in logs)
        if is_eval:
            logs.update({f"eval_{name}": value for name, value in self._mean_over_processes("eval").items()})
        elif "loss" in logs:
            self._raise_on_pending_non_finite()  # before a non-finite loss is logged
            logs.update(self._mean_over_processes("train"))
        super().log(logs, *args, **kwargs)

    def _mean_over_processes(self, split: str) -> dict[str, float]:
        averages = self.loss_terms.pop_tensor(split)
        if not averages:
            return {}
        values = torch.stack([averages[name] for name in LOSS_TERMS]).to(self.args.device)
        if self.args.world_size > 1:
            values = self.accelerator.reduce(values, reduction="mean")
        return {name: round(value, 6) for name, value in zip(LOSS_TERMS, values.tolist())}

    def create_optimizer(self, model=None):
        if self.optimizer is not None:
            return self.optimizer
        model = self.model if model is None else model
        decay_names = set(self.get_decay_parameter_names(model))
        known = parameter_groups(model)
        groups: dict[tuple[str, bool], list[torch.nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                group = known.get(id(parameter)) or parameter_group_of(name)
                groups.setdefault((group, name in decay_names), []).append(parameter)

        param_groups = []
        for (group, decays), parameters in sorted(groups.items()):
            param_groups.append(
                {
                    "params": parameters,
                    "lr": self._group_setting(group, "learning_rate"),
                    "weight_decay": self._group_setting(group, "weight_decay") if decays else 0.0,
                    "name": f"{group}{'' if decays else '_no_decay'}",
                }
            )
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        optimizer_kwargs.pop("lr", None)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def _group_setting(self, group: str, setting: str) -> float:
        value = getattr(self.args, f"{group}_{setting}", None)
        return getattr(self.args, setting) if value is None else value


__all__ = [
    "FrameAlignedTrainer",
    "FrameAlignedTrainingArguments",
    "NonFiniteError",
    "auxiliary_losses",
    "data_parallel_mean",
    "frame_aligned_model",
    "freeze_for_training",
    "finite_flags",
    "non_finite_values",
    "parameter_group_of",
    "parameter_groups",
]
