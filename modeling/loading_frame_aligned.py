"""How every `*ForFrameAlignedClassification` class reads and writes a checkpoint (mixed into each class).

Reading (`from_pretrained`, whichever way it is reached: our loader `auto_frame_aligned.py`, transformers' Auto
classes, a pipeline, Hub remote code):

- a checkpoint whose backbone does not load completely is refused with `BackboneWeightsError`, naming the tensors
  that were not found: transformers would start them from random values and only log a table;
- a head the checkpoint does not have (a plain backbone, or another pooling than the checkpoint's: stage 1 →
  stage 2) is started anew and reported in one line (`new_head_keys` lists its tensors), instead of transformers'
  MISSING / UNEXPECTED table; other checkpoint tensors the model has no place for (a pre-training quantizer, a CTC
  head) are named in that line by prefix.

Writing (`save_pretrained`): `auto_map` names the model for `AutoModel` as well as
`AutoModelForAudioClassification` (and the config for `AutoConfig`), so a local checkpoint loads with
`trust_remote_code=True` exactly as a published one.

Self-contained (relative imports only): uploaded with every checkpoint as remote code.
"""

import contextlib
import logging as std_logging
import re
from collections import Counter

import torch
from transformers.utils import logging


logger = logging.get_logger(__name__)

# transformers' loader logs its per-tensor MISSING / UNEXPECTED table through the first (`log_state_dict_report`),
# the model-type note through the second.
TRANSFORMERS_LOAD_LOGGERS = ("transformers.modeling_utils", "transformers.configuration_utils")
# Weights a backbone may lack without harm: SpecAugment's learned mask vector (a checkpoint saved with masking off
# has none; it is only used in training, never at inference).
OPTIONAL_BACKBONE_KEYS = ("masked_spec_embed",)
# The Auto classes `save_pretrained` names the model for (transformers records only the one it was registered for).
AUTO_MODEL_CLASSES = ("AutoModel", "AutoModelForAudioClassification")
SHOWN_KEYS = 10


class BackboneWeightsError(ValueError):
    """A checkpoint's backbone tensors did not all load into the model class (a mismatched, truncated or foreign
    checkpoint): its backbone would silently start from random weights."""


class HeadWeightsError(ValueError):
    """A checkpoint opened to predict has no trained head for the model asked for (a plain backbone, or settings that
    change the head): its predictions would come from random weights."""


def refuse_new_head(model, source) -> None:
    """Raise `HeadWeightsError` when `model` (loaded from `source` to predict) has head tensors that did not come
    from the checkpoint (`new_head_keys`)."""
    new_head = getattr(model, "new_head_keys", None) or []
    if new_head:
        raise HeadWeightsError(
            f"{source}: its head tensors ({_by_prefix(new_head)}) are not in the checkpoint, so predictions would "
            "come from random weights. A plain backbone must be fine-tuned first (train.py); a frame-aligned "
            "checkpoint must be loaded with its own settings (pooling, number of classes)."
        )


# transformers warns when a plain backbone's config (`model_type` "hubert") builds ours ("hubert-frame-aligned"): that
# is how a backbone checkpoint is meant to load; the one-line report says what happened instead.
_BACKBONE_INTO_OURS = re.compile(r"model of type `([\w-]+)` to instantiate a model of type `\1-frame-aligned`")


class _DropLoadReport(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        message = record.getMessage()
        return "LOAD REPORT" not in message and not _BACKBONE_INTO_OURS.search(message)


_DROP_LOAD_REPORT = _DropLoadReport()


@contextlib.contextmanager
def quiet_load_report():
    """Drop transformers' load-report table while a frame-aligned checkpoint loads (its content is checked and
    reported here instead; errors transformers raises are untouched)."""
    targets = [std_logging.getLogger(name) for name in TRANSFORMERS_LOAD_LOGGERS]
    for target in targets:
        target.addFilter(_DROP_LOAD_REPORT)
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(_DROP_LOAD_REPORT)


def _by_prefix(keys) -> str:
    """ "pooler.* (3), classifier.* (2)": tensor names grouped by their first component."""
    counts = Counter(key.split(".")[0] for key in keys)
    return ", ".join(f"{prefix}.* ({count})" for prefix, count in sorted(counts.items()))


class FrameAlignedLoadingMixin:
    """`from_pretrained` that refuses an incomplete backbone and reports a new head in one line; `save_pretrained`
    with a complete `auto_map`. Mixed into `FrameAlignedModelMixin` (see the module docstring).

    Attributes set by `from_pretrained`:
        new_head_keys (`list[str]`): head tensors that did not come from the checkpoint (started anew): empty when the
            whole model loaded.
        dropped_checkpoint_keys (`list[str]`): checkpoint tensors of a head that was replaced (another pooling).
    """

    new_head_keys: list[str] = []
    dropped_checkpoint_keys: list[str] = []

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """transformers' `from_pretrained`, then the checks above (on a checkpoint: not when the weights are passed
        as `from_pretrained(None, config=..., state_dict=...)`).

        Raises:
            BackboneWeightsError: backbone tensors missing from the checkpoint (or of another shape), named.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        with quiet_load_report():
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        if pretrained_model_name_or_path is not None:  # None: weights given as `state_dict=`, no checkpoint to check
            model._check_backbone_loaded(loading_info, pretrained_model_name_or_path)
        model._start_new_head_if_pooling_changed(loading_info)
        model._report_load(loading_info, pretrained_model_name_or_path)
        return (model, loading_info) if output_loading_info else model

    @staticmethod
    def _not_loaded(loading_info: dict) -> set[str]:
        """Model tensors that did not come from the checkpoint: missing, or of another shape (and re-initialised)."""
        mismatched = {
            entry[0] if isinstance(entry, tuple) else entry for entry in loading_info.get("mismatched_keys", [])
        }
        return set(loading_info.get("missing_keys", [])) | mismatched

    def _check_backbone_loaded(self, loading_info: dict, source) -> None:
        prefix = f"{self.base_model_prefix}."
        missing = sorted(
            key
            for key in self._not_loaded(loading_info)
            if key.startswith(prefix) and not key.endswith(OPTIONAL_BACKBONE_KEYS)
        )
        if not missing:
            return
        shown = ", ".join(missing[:SHOWN_KEYS]) + (
            f", ... ({len(missing) - SHOWN_KEYS} more)" if len(missing) > SHOWN_KEYS else ""
        )
        unexpected = sorted(loading_info.get("unexpected_keys", []))
        found = f"; the checkpoint has instead: {_by_prefix(unexpected)}" if unexpected else ""
        raise BackboneWeightsError(
            f"{source}: {len(missing)} backbone tensors of {type(self).__name__} are missing from the checkpoint "
            f"({shown}){found}. Its backbone would start from random weights. Its config.json says model_type "
            f"{self.config.model_type!r}, but its weights are not a complete `{self.base_model_prefix}` backbone: "
            "check that config.json belongs to these weights (and that the file is complete)."
        )

    def _start_new_head_if_pooling_changed(self, loading_info: dict) -> None:
        """A classifier trained on another pooling's output is meaningless: re-initialise it with the pooler."""
        missing = list(loading_info.get("missing_keys", []))
        unexpected = list(loading_info.get("unexpected_keys", []))
        if not any(key.startswith("pooler.") for key in missing + unexpected):
            return
        dropped = sorted(key for key in unexpected if key.startswith("pooler."))
        if not any(key.startswith("classifier.") for key in missing):
            with torch.no_grad():
                self.classifier.weight.normal_(mean=0.0, std=self.config.initializer_range)
                self.classifier.bias.zero_()
            dropped += sorted(name for name, _ in self.classifier.named_parameters(prefix="classifier"))
        self.dropped_checkpoint_keys = dropped

    def _report_load(self, loading_info: dict, source) -> None:
        """One line for what did not come from the checkpoint (a new head) and what of it was not used."""
        prefix = f"{self.base_model_prefix}."
        new_head = {key for key in self._not_loaded(loading_info) if not key.startswith(prefix)}
        new_head |= {key for key in self.dropped_checkpoint_keys if key.startswith("classifier.")}
        self.new_head_keys = sorted(new_head)
        unused = sorted(set(loading_info.get("unexpected_keys", [])) - set(self.dropped_checkpoint_keys))
        parts = []
        if source is None:
            return
        if self.new_head_keys:
            parts.append(
                f"started a new `{self.config.pooling}` head ({_by_prefix(self.new_head_keys)}) on the checkpoint's "
                "backbone"
            )
        if self.dropped_checkpoint_keys:
            parts.append(f"replaced the checkpoint's head ({_by_prefix(self.dropped_checkpoint_keys)})")
        if unused:
            parts.append(f"not used: {_by_prefix(unused)}")
        if parts:
            logger.warning(f"{type(self).__name__} from {source}: " + "; ".join(parts) + ".")

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' `save_pretrained`, with `auto_map` naming this class for `AutoModel` and
        `AutoModelForAudioClassification` (when the class is registered for remote code: `import modeling`)."""
        if getattr(type(self), "_auto_class", None) is not None:
            reference = f"{type(self).__module__.split('.')[-1]}.{type(self).__name__}"
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            self.config.auto_map = {**auto_map, **{name: reference for name in AUTO_MODEL_CLASSES}}
        return super().save_pretrained(save_directory, *args, **kwargs)


__all__ = [
    "BackboneWeightsError",
    "FrameAlignedLoadingMixin",
    "HeadWeightsError",
    "quiet_load_report",
    "refuse_new_head",
]
