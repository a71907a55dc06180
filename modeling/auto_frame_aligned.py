"""The one way to open a checkpoint: `AutoModelForFrameAlignedClassification` (and its config).

Every entry point opens models through it (train.py's stages, score.py, predict.py and its ONNX export, the timeline,
the examples, the benchmarks); no other module names a concrete model class to open a checkpoint. It takes any of our
frame-aligned checkpoints and any plain wav2vec 2.0 / HuBERT / WavLM / data2vec-audio / Whisper checkpoint (a Hub id
or a folder) and picks the `*ForFrameAlignedClassification` class from the checkpoint's `model_type`:

```python
>>> from modeling import AutoModelForFrameAlignedClassification
>>> model = AutoModelForFrameAlignedClassification.from_pretrained("runs/demo/fold1/stage2/best")  # to predict
>>> model = AutoModelForFrameAlignedClassification.from_pretrained(  # to train: a new head on a backbone
...     "facebook/hubert-base-ls960", start_new_head=True, pooling="attentive", num_labels=4
... )
```

A checkpoint whose backbone does not load completely is refused (`BackboneWeightsError`, naming the tensors, from the
classes' own `from_pretrained`: `loading_frame_aligned.py`). To predict, the whole model must come from the checkpoint:
a head that would be started anew (a plain backbone, another pooling or number of classes than the checkpoint's) is
refused with `HeadWeightsError`; `start_new_head=True` (training) allows it and reports it in one line.

Self-contained (relative imports only), like the rest of the core.
"""

import os

from transformers import PreTrainedConfig

from .configuration_frame_aligned import FrameAlignedConfigMixin, frame_aligned_config_class
from .loading_frame_aligned import BackboneWeightsError, HeadWeightsError, refuse_new_head
from .modeling_frame_aligned import SSL_FRAME_ALIGNED_MODELS, FrameAlignedModelMixin
from .modeling_whisper_frame_aligned import WhisperForFrameAlignedClassification


# The frame-aligned model class of each frame-aligned config's `model_type` (every backbone).
FRAME_ALIGNED_MODELS = {
    **SSL_FRAME_ALIGNED_MODELS,
    WhisperForFrameAlignedClassification.config_class.model_type: WhisperForFrameAlignedClassification,
}


# `from_pretrained` arguments that say where a checkpoint is (passed on to reading its config.json too).
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download", "proxies")


class CheckpointNotFoundError(ValueError):
    """What was given as a model is not a checkpoint (a typo, a run directory, a folder without config.json, a Hub
    id that does not resolve); the message says what was given and what is expected."""


EXPECTED_CHECKPOINT = (
    "expected a checkpoint folder (with config.json and model.safetensors, e.g. a run's fold1/stage2/best) or a "
    "Hub model id (ORG/NAME)"
)


def local_path_meant(name_or_path) -> bool:
    """Whether a `name_or_path` that does not exist can only be meant as a local folder: not of the form ORG/NAME,
    or its first part is a local folder ("runs/dmeo" beside a runs/ folder): no Hub lookup is tried for it."""
    given = str(name_or_path)
    if os.path.exists(given):
        return True
    return given.startswith((".", "/", "~")) or given.count("/") != 1 or os.path.isdir(given.split("/")[0])


def not_a_checkpoint(name_or_path, error: Exception | None = None) -> CheckpointNotFoundError:
    """The error for a `name_or_path` that does not open as a checkpoint: what was given (a missing path, a folder
    without config.json, a Hub id that did not resolve) and what is expected."""
    given = str(name_or_path)
    if os.path.isdir(given):
        has_config = os.path.isfile(os.path.join(given, "config.json"))
        found = "a folder whose config.json names no model_type" if has_config else "a folder without config.json"
    elif os.path.exists(given):
        found = "a file, not a checkpoint folder"
    elif local_path_meant(given):
        found = "no such folder"
    else:
        reason = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
        found = "no such folder, and no Hub model of that id could be opened" + (f" ({reason})" if reason else "")
    return CheckpointNotFoundError(f"{given!r} is not a checkpoint: {found}; {EXPECTED_CHECKPOINT}.")


def checkpoint_model_type(name_or_path: str | os.PathLike, **hub_kwargs) -> str:
    """The `model_type` in a checkpoint's config.json (a Hub id or folder).

    Raises:
        CheckpointNotFoundError: no readable config.json, or one without a model_type (the message names what was
            given and what is expected).
    """
    if not os.path.exists(str(name_or_path)) and local_path_meant(name_or_path):
        raise not_a_checkpoint(name_or_path)  # a mistyped path: no Hub lookup (minutes offline)
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(str(name_or_path), **hub_kwargs)
    except (OSError, ValueError) as error:  # a malformed Hub id is huggingface_hub's HFValidationError (ValueError)
        raise not_a_checkpoint(name_or_path, error) from error
    if not config_dict.get("model_type"):
        raise not_a_checkpoint(name_or_path)
    return config_dict["model_type"]


def frame_aligned_class_of(name_or_path: str | os.PathLike, **hub_kwargs) -> type[FrameAlignedModelMixin]:
    """The `*ForFrameAlignedClassification` class for a checkpoint, from its config.json's `model_type`: a plain
    backbone ("wav2vec2", "hubert", "wavlm", "data2vec-audio") or a frame-aligned checkpoint of one.

    Raises:
        ValueError: no readable config.json, or a model type without a frame-aligned class (the message names the
            checkpoint, its model type and the supported ones).
    """
    model_type = checkpoint_model_type(name_or_path, **hub_kwargs)
    try:
        return FRAME_ALIGNED_MODELS[frame_aligned_config_class(model_type).model_type]
    except ValueError as error:
        raise ValueError(f"{name_or_path}: {error}") from None


class AutoModelForFrameAlignedClassification:
    """Opens any frame-aligned or plain backbone checkpoint as the right `*ForFrameAlignedClassification` class (see
    the module docstring). Not instantiable: use `from_pretrained`, `from_config` or `config_from_pretrained`."""

    def __init__(self, *args, **kwargs):
        raise OSError(f"{type(self).__name__} is not instantiable: use `{type(self).__name__}.from_pretrained(...)`.")

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, *, start_new_head: bool = False, **kwargs
    ) -> FrameAlignedModelMixin:
        """The checkpoint `name_or_path` (Hub id or folder) as a frame-aligned model.

        Args:
            start_new_head: `False` (to predict): every tensor must come from the checkpoint; `True` (to train): a
                head the checkpoint lacks (a plain backbone, another `pooling` or `num_labels`) is started anew.
            kwargs: `from_pretrained` arguments, including config fields (`pooling="cls_attention"`,
                `num_trainable_layers=1`, `id2label=...`) and Hub arguments (`revision`, `token`, ...).
        Raises:
            ValueError: no readable config.json, or a model type without a frame-aligned class.
            BackboneWeightsError: backbone tensors the checkpoint lacks (named).
            HeadWeightsError: without `start_new_head`, head tensors that would start from random values (named).
        """
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        model_class = frame_aligned_class_of(name_or_path, **hub_kwargs)
        if start_new_head:  # another num_labels: the classifier's shapes differ and it is started anew (reported)
            kwargs.setdefault("ignore_mismatched_sizes", True)
            if "num_labels" in kwargs and "id2label" not in kwargs:  # the checkpoint's id2label would not fit
                kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(kwargs.pop("num_labels"))}
                kwargs["label2id"] = {name: i for i, name in kwargs["id2label"].items()}
        model = model_class.from_pretrained(name_or_path, **kwargs)
        if not start_new_head:
            refuse_new_head(model, name_or_path)
        return model

    @classmethod
    def from_config(cls, config: FrameAlignedConfigMixin) -> FrameAlignedModelMixin:
        """A randomly initialised model of the class for `config` (a frame-aligned config of any backbone)."""
        return FRAME_ALIGNED_MODELS[frame_aligned_config_class(config.model_type).model_type](config)

    @staticmethod
    def config_from_pretrained(name_or_path: str | os.PathLike, **kwargs) -> FrameAlignedConfigMixin:
        """The checkpoint's config as the frame-aligned config of its backbone (a plain backbone's config gets the
        head's defaults); `kwargs` set fields (`pooling=...`) and Hub arguments. Raises `ValueError` as
        `frame_aligned_class_of`, and for fields the head refuses (`check_head_fields`)."""
        hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
        config_class = frame_aligned_class_of(name_or_path, **hub_kwargs).config_class
        config = config_class.from_pretrained(name_or_path, **kwargs)
        config.check_head_fields()  # from_pretrained sets its keyword arguments after __init__'s checks
        return config


__all__ = [
    "AutoModelForFrameAlignedClassification",
    "BackboneWeightsError",
    "CheckpointNotFoundError",
    "FRAME_ALIGNED_MODELS",
    "HeadWeightsError",
    "checkpoint_model_type",
    "frame_aligned_class_of",
]
