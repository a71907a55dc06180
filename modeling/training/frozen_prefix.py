"""Stage 2 from a cache of the frozen prefix: compute the CNN + lower transformer layers once per fold.

In stage 2 the CNN feature encoder, the feature projection, the positional convolution and the lower
`num_hidden_layers - num_trainable_layers` transformer layers are frozen. Their output for a clip never changes
during training, so it is computed once (`build_prefix_cache`) and stage 2 trains the top layers, the pooling head
and the classifier from it (`FrozenPrefixModel`). For wav2vec2-base on 3 s clips that is about half of the FLOPs of
a stage-2 step (see `benchmarks/frozen_prefix.py`).

Where the cut is (the prefix ends with the hidden states that enter the first trainable layer):

- post-norm encoders (`do_stable_layer_norm=False`, wav2vec2-base): feature encoder → feature projection →
  (SpecAugment) → zero the padded frames when the backbone gets a mask → + positional conv → encoder `layer_norm`
  → dropout → layers[:N]. The encoder `layer_norm` runs *before* layer 0, so it is part of the prefix.
- pre-norm / stable-layer-norm encoders (wav2vec2-large-lv60 style): the same, without the norm before the layers;
  their final encoder `layer_norm` runs after the last layer and belongs to the trainable part.

What the cache changes (documented trade-offs; all are exact no-ops when the frozen part runs deterministically):

- The prefix is computed in eval mode: dropout inside the frozen part (`feat_proj_dropout`, `hidden_dropout`,
  `attention_dropout`, `activation_dropout` of the lower layers), LayerDrop of the lower layers and SpecAugment
  (`mask_time_prob`/`mask_feature_prob`: `masked_spec_embed` is applied right after the feature projection, inside
  the prefix) are OFF with the cache, while uncached stage-2 training applies them. Note that `Wav2Vec2Config`
  defaults to `mask_time_prob=0.05`. Dropout and LayerDrop of the trainable top layers and the head stay on.
  `disable_frozen_prefix_regularization` turns the same things off in an uncached model, for an exact comparison.
- A random crop in the collator (`random_crop=True`) is drawn once, at cache time; build the cache with a
  deterministic collator.
- Padding. A `feat_extract_norm="group"` backbone (wav2vec2-base) normalises its first conv layer over the whole
  padded sequence and, pre-trained without attention masks, attends over padded frames: a clip's prefix output
  depends on the batch it is padded in. For those backbones the cache keeps each batch (rows padded to the batch's
  longest clip, padded frames included) and `FrozenPrefixTrainer` replays exactly these batches every epoch, in a
  new order; with length-sorted batches (the default) padding is < 2 % anyway. `feat_extract_norm="layer"`
  backbones that receive the attention mask are padding-independent: rows are trimmed to their valid frames and
  any sampler may batch them.

Usage (what `train.py` does with `stage2.cache_frozen_prefix: true`):

```python
model.freeze_for_training()
train_cache = build_prefix_cache(model, train_dataset, collator, batch_size=32, dtype=torch.float16)
eval_cache = build_prefix_cache(model, eval_dataset, collator, batch_size=32, dtype=torch.float16)
trainer = FrozenPrefixTrainer(
    model=FrozenPrefixModel(model), args=args, train_dataset=train_cache, eval_dataset=eval_cache,
    data_collator=FrozenPrefixCollator(),
)
trainer.train()
model.save_pretrained(output_dir)  # FrozenPrefixModel's parameters ARE the model's modules
```
"""

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers.masking_utils import create_bidirectional_mask

from .io_utils import atomic_directory, atomic_write_json
from ..modeling_frame_aligned import FrameAlignedClassifierOutput, Wav2Vec2ForFrameAlignedClassification
from .sampling import LengthSortedSampler, chunk, length_sorted_indices
from .trainer import FrameAlignedTrainer


logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_STORAGE_DTYPES = {  # torch dtype → (name, numpy storage dtype); bfloat16 is stored as its raw 16 bits
    torch.float32: ("float32", np.float32),
    torch.float16: ("float16", np.float16),
    torch.bfloat16: ("bfloat16", np.uint16),
}
_DTYPES_BY_NAME = {name: dtype for dtype, (name, _) in _STORAGE_DTYPES.items()}


# --------------------------------------------------------------------------------------------------------------
# The cut: prefix forward and trainable-top forward, reusing the model's own submodules
# --------------------------------------------------------------------------------------------------------------


def num_frozen_layers_of(model: Wav2Vec2ForFrameAlignedClassification) -> int:
    """N, the number of frozen transformer layers; the prefix needs N >= 1."""
    n = model.num_frozen_layers
    if n < 1:
        raise ValueError(
            "The frozen-prefix cache needs frozen transformer layers (config.num_trainable_layers < "
            f"num_hidden_layers); got num_trainable_layers={model.config.num_trainable_layers}."
        )
    return n


def is_padding_independent(config) -> bool:
    """Whether a clip's prefix output is the same in any padded batch.

    True for `feat_extract_norm="layer"` backbones that receive the attention mask (per-frame conv norms, padded
    frames zeroed and masked). False for `"group"` backbones (the first conv's GroupNorm spans the padded sequence)
    and for backbones run without a mask (attention over padded frames).
    """
    return config.feat_extract_norm == "layer" and config.use_backbone_attention_mask


@torch.no_grad()
def frozen_prefix_forward(
    model: Wav2Vec2ForFrameAlignedClassification,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen prefix: the hidden states entering transformer layer N, and the frame mask.

    Mirrors `Wav2Vec2Model.forward` + `Wav2Vec2Encoder(StableLayerNorm).forward` up to layer N (same modules, same
    order). Run the model in eval mode for a deterministic cache (`build_prefix_cache` does).

    Args:
        input_values: (B, S) padded 16 kHz waveforms.
        attention_mask: (B, S) 1 for real samples; the frame mask is computed from it even when the backbone
            does not receive it (`config.use_backbone_attention_mask`).
    Returns:
        hidden_states (B, T, H) and frame_mask (B, T) bool.
    """
    wav2vec2, config = model.wav2vec2, model.config
    encoder = wav2vec2.encoder
    num_frozen = num_frozen_layers_of(model)

    features = wav2vec2.feature_extractor(input_values).transpose(1, 2)
    batch_size, num_frames = features.shape[:2]
    frame_mask = model.frame_mask(num_frames, attention_mask, batch_size, features.device)
    backbone_mask = frame_mask if config.use_backbone_attention_mask and attention_mask is not None else None

    hidden_states, _ = wav2vec2.feature_projection(features)
    hidden_states = wav2vec2._mask_hidden_states(hidden_states, attention_mask=backbone_mask)  # SpecAugment
    if backbone_mask is not None:
        hidden_states = hidden_states.masked_fill(~backbone_mask.unsqueeze(-1), 0.0)
    layer_mask = create_bidirectional_mask(
        config=encoder.config, inputs_embeds=hidden_states, attention_mask=backbone_mask
    )
    hidden_states = hidden_states + encoder.pos_conv_embed(hidden_states)
    if not config.do_stable_layer_norm:  # post-norm: the encoder norm precedes layer 0, so it is frozen
        hidden_states = encoder.layer_norm(hidden_states)
    hidden_states = encoder.dropout(hidden_states)
    for layer in encoder.layers[:num_frozen]:
        if _skip_layer(encoder):
            continue
        hidden_states = layer(hidden_states, attention_mask=layer_mask)
    return hidden_states, frame_mask


def _skip_layer(encoder: nn.Module) -> bool:
    """LayerDrop, drawn exactly as `Wav2Vec2Encoder.forward` draws it."""
    if encoder.training and encoder.config.layerdrop > 0.0:
        return bool(torch.rand([]) < encoder.config.layerdrop)
    return False


def disable_frozen_prefix_regularization(model: Wav2Vec2ForFrameAlignedClassification) -> None:
    """Make the frozen part of an (uncached) model deterministic in train mode, as it is with the cache.

    Sets dropout to 0 in the feature projection, the encoder input and the lower N layers, and turns SpecAugment
    off. LayerDrop is one config value for all layers and is not touched (set `config.layerdrop = 0` yourself).
    With p = 0, dropout draws no random numbers, so the random stream of the top layers is the same with and
    without the cache.
    """
    num_frozen = num_frozen_layers_of(model)
    encoder = model.wav2vec2.encoder
    modules = [model.wav2vec2.feature_projection, encoder.dropout, *encoder.layers[:num_frozen]]
    for module in modules:
        for submodule in module.modules():
            if isinstance(submodule, nn.Dropout):
                submodule.p = 0.0
            elif hasattr(submodule, "dropout") and isinstance(submodule.dropout, float):  # Wav2Vec2Attention
                submodule.dropout = 0.0
    model.config.apply_spec_augment = False


class FrozenPrefixModel(nn.Module):
    """The trainable part of a stage-2 model, run on cached prefix outputs: layers[N:] → (final norm) → pooler →
    dropout → classifier. Returns the same `FrameAlignedClassifierOutput` as the full model, so
    `FrameAlignedTrainer.compute_loss` adds EAL and FUAL unchanged.

    Its submodules are the original model's own, registered under the same names (`wav2vec2`, `pooler`, `dropout`,
    `classifier`): its `state_dict()` is the original's, checkpoints `FrozenPrefixTrainer` writes load with
    `Wav2Vec2ForFrameAlignedClassification.from_pretrained`, and after training the original `model` holds the
    trained weights. The frozen modules stay in the state dict (a checkpoint must be complete) but never run.

    Args:
        model: a `Wav2Vec2ForFrameAlignedClassification` with `num_trainable_layers < num_hidden_layers`.
    """

    # forward() takes no loss kwargs: the Trainer must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False
    main_input_name = "hidden_states"

    def __init__(self, model: Wav2Vec2ForFrameAlignedClassification):
        super().__init__()
        self.num_frozen_layers = num_frozen_layers_of(model)
        self.wav2vec2 = model.wav2vec2
        self.pooler = model.pooler
        self.dropout = model.dropout
        self.classifier = model.classifier
        self._full_model = (model,)  # a tuple: not registered as a submodule, so no duplicate state-dict keys

    @property
    def full_model(self) -> Wav2Vec2ForFrameAlignedClassification:
        return self._full_model[0]

    @property
    def config(self):
        return self.full_model.config

    def freeze_for_training(self):
        """Called by `FrameAlignedTrainer`: the same `requires_grad` as the full model."""
        self.full_model.freeze_for_training()
        if self.full_model.num_frozen_layers != self.num_frozen_layers:
            raise ValueError("config.num_trainable_layers changed after the FrozenPrefixModel was built.")

    def save_pretrained(self, *args, **kwargs):
        return self.full_model.save_pretrained(*args, **kwargs)

    def gradient_checkpointing_enable(self, *args, **kwargs):
        return self.full_model.gradient_checkpointing_enable(*args, **kwargs)

    def gradient_checkpointing_disable(self):
        return self.full_model.gradient_checkpointing_disable()

    def forward(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
    ) -> tuple | FrameAlignedClassifierOutput:
        r"""
        hidden_states (`torch.FloatTensor` of shape `(batch_size, num_frames, hidden_size)`):
            Cached prefix output (`FrozenPrefixCollator` casts it to the compute dtype).
        frame_mask (`torch.BoolTensor` of shape `(batch_size, num_frames)`):
            `True` for frames computed from real samples.
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Utterance labels; the output `loss` is their cross-entropy.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else getattr(config, "return_dict", True)
        encoder = self.wav2vec2.encoder
        frame_mask = frame_mask.bool()
        layer_mask = None
        if config.use_backbone_attention_mask:
            layer_mask = create_bidirectional_mask(
                config=encoder.config, inputs_embeds=hidden_states, attention_mask=frame_mask
            )
        for layer in encoder.layers[self.num_frozen_layers :]:
            if _skip_layer(encoder):
                continue
            hidden_states = layer(hidden_states, attention_mask=layer_mask)
        if config.do_stable_layer_norm:  # pre-norm: the final norm follows the last layer, so it trains
            hidden_states = encoder.layer_norm(hidden_states)

        # From here on: the full model's own head (same modules, same order).
        output = self.full_model.classify_frames(hidden_states, frame_mask, labels)
        return output if return_dict else output.to_tuple()


# --------------------------------------------------------------------------------------------------------------
# The cache: a torch Dataset of per-example prefix outputs (memory or a memory-mapped file)
# --------------------------------------------------------------------------------------------------------------


class FrozenPrefixCache(Dataset):
    """Cached prefix outputs, one item per example of the source dataset (same indices).

    Item: `{"hidden_states": (T_row, H) in the storage dtype, "frame_mask": (T_row,) bool, "labels": int}`, where
    T_row is the example's valid frame count, or its batch's padded length when `batches` is kept (see the module
    docstring). Built by `build_prefix_cache`; `FrozenPrefixCache.load(cache_dir)` reopens a cache on disk.

    Attributes:
        num_frames: (N,) valid frames per example.
        batches: the batches the prefix was computed in, when they must be replayed (padding-dependent backbones),
            else None.
    """

    def __init__(
        self,
        *,
        hidden_size: int,
        dtype: torch.dtype,
        offsets: Sequence[int],
        row_lengths: Sequence[int],
        num_frames: Sequence[int],
        labels: Sequence[int] | None,
        batches: list[list[int]] | None,
        rows: list[torch.Tensor] | None = None,
        path: str | os.PathLike | None = None,
        metadata: dict | None = None,
    ):
        self.hidden_size = hidden_size
        self.dtype = dtype
        self.offsets = list(offsets)
        self.row_lengths = list(row_lengths)
        self.num_frames = list(num_frames)
        self.labels = None if labels is None else list(labels)
        self.batches = batches
        self.metadata = metadata or {}
        self._rows = rows
        self.path = None if path is None else Path(path)
        self._storage = None  # memory map, opened lazily (and re-opened in DataLoader workers)

    def __len__(self) -> int:
        return len(self.num_frames)

    def __getitem__(self, index: int) -> dict:
        item = {
            "hidden_states": self._row(index),
            "frame_mask": torch.arange(self.row_lengths[index]) < self.num_frames[index],
        }
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item

    def _row(self, index: int) -> torch.Tensor:
        if self._rows is not None:
            return self._rows[index]
        if self._storage is None:
            _, storage_dtype = _STORAGE_DTYPES[self.dtype]
            total = sum(self.row_lengths)
            self._storage = np.memmap(
                self.path / "hidden_states.bin", dtype=storage_dtype, mode="r", shape=(total, self.hidden_size)
            )
        start = self.offsets[index]
        row = torch.from_numpy(np.array(self._storage[start : start + self.row_lengths[index]]))
        return row.view(torch.bfloat16) if self.dtype == torch.bfloat16 else row

    def __getstate__(self):  # a memory map must not be pickled into DataLoader workers
        state = self.__dict__.copy()
        state["_storage"] = None
        return state

    @property
    def nbytes(self) -> int:
        return sum(self.row_lengths) * self.hidden_size * torch.finfo(self.dtype).bits // 8

    def save(self, directory: str | os.PathLike) -> None:
        """Write to `directory` (`hidden_states.bin` + `index.json`) atomically."""
        with atomic_directory(directory) as tmp:
            with open(tmp / "hidden_states.bin", "wb") as f:
                for index in sorted(range(len(self)), key=lambda i: self.offsets[i]):
                    f.write(_to_storage_bytes(self._row(index)))
            atomic_write_json(tmp / "index.json", self._index())

    def _index(self) -> dict:
        return {
            "format_version": CACHE_FORMAT_VERSION,
            "hidden_size": self.hidden_size,
            "dtype": _STORAGE_DTYPES[self.dtype][0],
            "offsets": self.offsets,
            "row_lengths": self.row_lengths,
            "num_frames": self.num_frames,
            "labels": self.labels,
            "batches": self.batches,
            "metadata": self.metadata,
        }

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "FrozenPrefixCache":
        directory = Path(directory)
        with open(directory / "index.json") as f:
            index = json.load(f)
        if index.get("format_version") != CACHE_FORMAT_VERSION:
            raise ValueError(f"{directory}: prefix cache format {index.get('format_version')} is not supported.")
        return cls(
            hidden_size=index["hidden_size"],
            dtype=_DTYPES_BY_NAME[index["dtype"]],
            offsets=index["offsets"],
            row_lengths=index["row_lengths"],
            num_frames=index["num_frames"],
            labels=index["labels"],
            batches=index["batches"],
            path=directory,
            metadata=index["metadata"],
        )


def _to_storage_bytes(row: torch.Tensor) -> bytes:
    if row.dtype == torch.bfloat16:
        row = row.view(torch.int16)
    return row.contiguous().numpy().tobytes()


@dataclass
class FrozenPrefixCollator:
    """Pad cached rows to the longest of the batch → `hidden_states` (B, T, H) in `dtype`, `frame_mask` (B, T),
    `labels` (B,). Rows of one replayed batch all have the batch's padded length, so nothing is added to them.

    Args:
        dtype: the compute dtype of the top layers (the cache may be stored in float16/bfloat16).
    """

    dtype: torch.dtype = torch.float32

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        lengths = [feature["hidden_states"].shape[0] for feature in features]
        hidden_size = features[0]["hidden_states"].shape[1]
        hidden_states = torch.zeros(len(features), max(lengths), hidden_size, dtype=self.dtype)
        frame_mask = torch.zeros(len(features), max(lengths), dtype=torch.bool)
        for row, (feature, length) in enumerate(zip(features, lengths)):
            hidden_states[row, :length] = feature["hidden_states"]
            frame_mask[row, :length] = feature["frame_mask"]
        batch = {"hidden_states": hidden_states, "frame_mask": frame_mask}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([int(feature["labels"]) for feature in features])
        return batch


def _lengths_of(dataset) -> list[float] | None:
    column_names = getattr(dataset, "column_names", None) or []
    for column in ("duration", "length", "input_length"):
        if column in column_names:
            return [float(value) for value in dataset[column]]
    return None


def dataset_fingerprint(dataset) -> str:
    """`datasets.Dataset._fingerprint` (changes with every select/filter/map), the content of a list of examples,
    else the type and length (a custom torch Dataset: pass `cache_dir` per dataset and fold)."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint:
        return str(fingerprint)
    if isinstance(dataset, (list, tuple)):
        return hashlib.sha256(json.dumps(list(dataset), sort_keys=True, default=str).encode()).hexdigest()
    return f"{type(dataset).__name__}:{len(dataset)}"


def prefix_fingerprint(model: Wav2Vec2ForFrameAlignedClassification, **settings) -> str:
    """sha256 of the frozen modules' weights, the cut and `settings` (dataset, batches, dtype, collator)."""
    digest = hashlib.sha256()
    config = model.config
    digest.update(
        json.dumps(
            {
                "num_frozen_layers": model.num_frozen_layers,
                "feat_extract_norm": config.feat_extract_norm,
                "do_stable_layer_norm": config.do_stable_layer_norm,
                "use_backbone_attention_mask": config.use_backbone_attention_mask,
                **settings,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    modules = [model.wav2vec2.feature_extractor, *model.frozen_backbone_modules()]
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@torch.no_grad()
def build_prefix_cache(
    model: Wav2Vec2ForFrameAlignedClassification,
    dataset,
    collator,
    batch_size: int = 8,
    dtype: torch.dtype = torch.float16,
    cache_dir: str | os.PathLike | None = None,
    *,
    lengths: Sequence[float] | None = None,
    batches: list[list[int]] | None = None,
    seed: int = 0,
    num_workers: int = 0,
    device: torch.device | str | None = None,
) -> FrozenPrefixCache:
    """Compute the frozen prefix of every example of `dataset` once.

    Args:
        model: the stage-2 model (`num_trainable_layers` set); it runs in eval mode here and its mode is restored.
        dataset: map-style dataset whose items `collator` turns into `input_values`, `attention_mask` (and `labels`).
        collator: e.g. `AudioClassificationCollator` (use `random_crop=False`: the crop is frozen into the cache).
        batch_size: examples per prefix batch. For padding-dependent backbones (see `is_padding_independent`)
            these batches are replayed in training: use the stage-2 `per_device_train_batch_size` (eval: the eval
            batch size).
        dtype: storage dtype (float32 reproduces the uncached path exactly; float16/bfloat16 halve the memory).
        cache_dir: write the cache there (memory-mapped, reusable across runs); an existing cache with the same
            fingerprint (frozen weights, dataset, batches, dtype, collator settings) is loaded instead of rebuilt.
            None keeps it in memory.
        lengths: (N,) clip lengths for length-sorted batches; default: the dataset's `duration`/`length` column,
            else dataset order (much more padding).
        batches: explicit batch composition (lists of indices covering the dataset once); overrides the above.
        seed: for the random tie-breaks of the length-sorted batches.
        num_workers: `DataLoader` workers decoding audio.
        device: where to run the prefix (default: the model's device).
    Returns:
        A `FrozenPrefixCache` (a torch `Dataset`, same indices as `dataset`).
    """
    num_frozen_layers_of(model)
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {list(_STORAGE_DTYPES)}, got {dtype}.")
    keep_batches = not is_padding_independent(model.config)
    if batches is None:
        lengths = lengths if lengths is not None else _lengths_of(dataset)
        if lengths is None:
            logger.warning("No lengths for the prefix cache: batching in dataset order (more padding).")
            batches = chunk(range(len(dataset)), batch_size)
        else:
            # jitter 0: the most similar lengths share a batch (least padding); the batch order is irrelevant here
            generator = torch.Generator().manual_seed(seed)
            batches = chunk(length_sorted_indices(lengths, batch_size, jitter=0.0, generator=generator), batch_size)
    batches = [list(map(int, batch)) for batch in batches]
    if sorted(i for batch in batches for i in batch) != list(range(len(dataset))):
        raise ValueError("`batches` must cover every index of the dataset exactly once.")

    collator_settings = {
        "collator": type(collator).__name__,
        "max_length_seconds": getattr(collator, "max_length_seconds", None),
        "random_crop": getattr(collator, "random_crop", None),
    }
    if collator_settings["random_crop"]:
        logger.warning("The collator crops at random: the crop is drawn once and frozen into the prefix cache.")
    metadata = {
        "fingerprint": prefix_fingerprint(
            model,
            dataset=dataset_fingerprint(dataset),
            batches=hashlib.sha256(json.dumps(batches).encode()).hexdigest(),
            dtype=str(dtype),
            **collator_settings,
        ),
        "num_frozen_layers": model.num_frozen_layers,
        "keep_batches": keep_batches,
    }
    if cache_dir is not None and (Path(cache_dir) / "index.json").is_file():
        cached = FrozenPrefixCache.load(cache_dir)
        if cached.metadata.get("fingerprint") == metadata["fingerprint"]:
            logger.info(f"Loaded the frozen-prefix cache from {cache_dir}.")
            return cached
        logger.info(f"The frozen-prefix cache in {cache_dir} is stale (other weights or data): rebuilding it.")

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collator, num_workers=num_workers)
    n = len(dataset)
    offsets, row_lengths, num_frames = [0] * n, [0] * n, [0] * n
    labels: list[int] | None = [0] * n
    rows: list[torch.Tensor | None] = [None] * n
    position = 0
    sink = _DiskSink(cache_dir) if cache_dir is not None else None
    try:
        for batch_indices, batch in zip(batches, loader):
            attention_mask = batch.get("attention_mask")
            hidden_states, frame_mask = frozen_prefix_forward(
                model,
                batch["input_values"].to(device),
                None if attention_mask is None else attention_mask.to(device),
            )
            hidden_states = hidden_states.to("cpu", dtype)
            valid = frame_mask.sum(dim=-1).tolist()
            for row, index in enumerate(batch_indices):
                length = hidden_states.shape[1] if keep_batches else int(valid[row])
                data = hidden_states[row, :length].clone()
                offsets[index], row_lengths[index], num_frames[index] = position, length, int(valid[row])
                position += length
                if sink is not None:
                    sink.write(data)
                else:
                    rows[index] = data
            if labels is not None and "labels" in batch:
                for row, index in enumerate(batch_indices):
                    labels[index] = int(batch["labels"][row])
            else:
                labels = None
        cache = FrozenPrefixCache(
            hidden_size=model.config.hidden_size,
            dtype=dtype,
            offsets=offsets,
            row_lengths=row_lengths,
            num_frames=num_frames,
            labels=labels,
            batches=batches if keep_batches else None,
            rows=None if sink is not None else rows,
            metadata=metadata,
        )
        if sink is not None:
            sink.commit(cache._index())
            cache = FrozenPrefixCache.load(cache_dir)
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        model.train(was_training)
    return cache


class _DiskSink:
    """Appends rows to `hidden_states.bin` in a temporary folder that replaces `cache_dir` on `commit`."""

    def __init__(self, cache_dir):
        self._context = atomic_directory(cache_dir)
        self.tmp = self._context.__enter__()
        self.file = open(self.tmp / "hidden_states.bin", "wb")

    def write(self, row: torch.Tensor):
        self.file.write(_to_storage_bytes(row))

    def commit(self, index: dict):
        self.file.close()
        atomic_write_json(self.tmp / "index.json", index)
        self._context.__exit__(None, None, None)

    def abort(self):
        self.file.close()
        try:
            self._context.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass


# --------------------------------------------------------------------------------------------------------------
# Training from the cache
# --------------------------------------------------------------------------------------------------------------


class ReplayBatchesSampler(Sampler[int]):
    """Yields the indices of fixed `batches`, batch after batch, so that `DataLoader(batch_size=B)` re-forms
    exactly these batches: all full batches (in a new random order each epoch when `shuffle`), then the one
    short batch. Use it for caches of padding-dependent backbones (see the module docstring).
    """

    def __init__(self, batches: list[list[int]], batch_size: int, shuffle: bool = True, seed: int = 0):
        full = [batch for batch in batches if len(batch) == batch_size]
        short = [batch for batch in batches if len(batch) != batch_size]
        if len(short) > 1 or any(len(batch) > batch_size for batch in short):
            sizes = sorted({len(batch) for batch in batches})
            raise ValueError(
                f"The prefix cache was built with batches of sizes {sizes}, but the DataLoader uses batch_size="
                f"{batch_size}: build the cache with batch_size={batch_size} (the per-device batch size)."
            )
        self.full, self.short = full, short
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self._epoch_was_set = False

    def set_epoch(self, epoch: int):
        self.epoch, self._epoch_was_set = epoch, True

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.full + self.short)

    def __iter__(self):
        order = list(range(len(self.full)))
        if self.shuffle:
            order = torch.randperm(
                len(self.full), generator=torch.Generator().manual_seed(self.seed + self.epoch)
            ).tolist()
            if not self._epoch_was_set:
                self.epoch += 1
            self._epoch_was_set = False
        return iter([index for batch in [self.full[i] for i in order] + self.short for index in batch])


class FrozenPrefixTrainerMixin:
    """Trainer mixin for `FrozenPrefixModel` on `FrozenPrefixCache` datasets.

    - Samplers: a cache that keeps its batches is replayed batch by batch (`ReplayBatchesSampler`: shuffled batch
      order in training, fixed in evaluation); a trimmed cache uses `LengthSortedSampler` on its frame counts when
      `train_sampling_strategy="group_by_length"`.
    - Checkpoints: written with the full model's `save_pretrained` (config + weights, loadable with
      `from_pretrained`); the Trainer's own state-dict loading works because the key names are the same.
    """

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = self.train_dataset if train_dataset is None else train_dataset
        if isinstance(train_dataset, FrozenPrefixCache):
            if train_dataset.batches is not None:
                return ReplayBatchesSampler(
                    train_dataset.batches, self.args.per_device_train_batch_size, shuffle=True, seed=self.args.seed
                )
            if self.args.train_sampling_strategy == "group_by_length":
                return LengthSortedSampler(
                    train_dataset.num_frames, self.args.per_device_train_batch_size, seed=self.args.seed
                )
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if isinstance(eval_dataset, FrozenPrefixCache) and eval_dataset.batches is not None:
            return ReplayBatchesSampler(eval_dataset.batches, self.args.per_device_eval_batch_size, shuffle=False)
        return super()._get_eval_sampler(eval_dataset)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if not isinstance(model, FrozenPrefixModel):
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model.full_model.save_pretrained(output_dir, state_dict=state_dict)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))


class FrozenPrefixTrainer(FrozenPrefixTrainerMixin, FrameAlignedTrainer):
    """`FrameAlignedTrainer` (CE + λ·EAL + λ·FUAL, LR groups) training stage 2 from a `FrozenPrefixCache`."""


__all__ = [
    "FrozenPrefixCache",
    "FrozenPrefixCollator",
    "FrozenPrefixModel",
    "FrozenPrefixTrainer",
    "FrozenPrefixTrainerMixin",
    "ReplayBatchesSampler",
    "build_prefix_cache",
    "disable_frozen_prefix_regularization",
    "frozen_prefix_forward",
    "is_padding_independent",
    "prefix_fingerprint",
]
