"""The frozen prefix's output, computed once per fold (`build_prefix_cache`) and read back as a torch `Dataset`
(`FrozenPrefixCache`): in memory, or memory-mapped from `hidden_states.bin` + `index.json` in a cache folder that
is reused while its fingerprint (frozen weights, data, batches, dtype, collator) matches.

Padding-dependent backbones keep the batches the prefix was computed in (rows padded to their batch's longest
clip), to be replayed in training; padding-independent ones store each row trimmed to its valid frames. See
`prefix_model.py` for the cut and the trade-offs of the cache.
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
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..modeling_frame_aligned import FrameAlignedModelMixin
from ..rundir.atomic import atomic_directory, atomic_write_json
from ..trainer.sampling import chunk, length_sorted_indices
from .model import frozen_prefix_forward, is_padding_independent, num_frozen_layers_of


logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
_STORAGE_DTYPES = {  # torch dtype → (name, numpy storage dtype); bfloat16 is stored as its raw 16 bits
    torch.float32: ("float32", np.float32),
    torch.float16: ("float16", np.float16),
    torch.bfloat16: ("bfloat16", np.uint16),
}
_DTYPES_BY_NAME = {name: dtype for dtype, (name, _) in _STORAGE_DTYPES.items()}


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
            self._open_storage()
        start = self.offsets[index]
        row = torch.from_numpy(np.array(self._storage[start : start + self.row_lengths[index]]))
        return row.view(torch.bfloat16) if self.dtype == torch.bfloat16 else row

    def _open_storage(self) -> None:
        """Memory-map `hidden_states.bin`. Opened when the cache is loaded, so that a folder rebuilt later (the atomic
        replacement leaves the old file alive for this map) cannot feed this object the new file's rows through its
        old index; a copy re-opening it (a DataLoader worker) checks the file is still the one loaded.

        Raises:
            RuntimeError: the file was replaced since `load` (its inode, size or mtime differ).
        """
        path = self.path / "hidden_states.bin"
        identity = _file_identity(path)
        loaded = getattr(self, "_loaded_identity", None)
        if loaded is not None and identity != loaded:
            raise RuntimeError(
                f"{path}: the frozen-prefix cache was rebuilt after it was loaded; its index no longer matches the "
                "file. Load the cache again (FrozenPrefixCache.load)."
            )
        self._loaded_identity = identity
        _, storage_dtype = _STORAGE_DTYPES[self.dtype]
        total = sum(self.row_lengths)
        if total == 0:  # an empty file cannot be memory-mapped
            self._storage = np.zeros((0, self.hidden_size), dtype=storage_dtype)
            return
        self._storage = np.memmap(path, dtype=storage_dtype, mode="r", shape=(total, self.hidden_size))

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
        cache = cls(
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
        cache._open_storage()
        return cache


def _file_identity(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


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
    """Seconds as `modeling.data.audio_columns.audio_lengths` reads them (`duration_s`, else a legacy `duration`)
    when the dataset has such a column, else its `length` / `input_length` column, else None (dataset order)."""
    from ..data.audio_columns import audio_lengths, duration_column

    column_names = getattr(dataset, "column_names", None) or []
    if duration_column(column_names) is not None:
        return audio_lengths(dataset)
    for column in ("length", "input_length"):
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


def prefix_fingerprint(model: FrameAlignedModelMixin, **settings) -> str:
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
    modules = [model.base_model.feature_extractor, *model.frozen_backbone_modules()]
    for module in modules:
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


@torch.no_grad()
def build_prefix_cache(
    model: FrameAlignedModelMixin,
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
        lengths: (N,) clip lengths for length-sorted batches; default: the dataset's `duration_s` (or legacy
            `duration`) column in seconds, else its `length` or `input_length` column, else dataset order (much
            more padding).
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
    batches = prefix_batches(dataset, batch_size, lengths, batches, seed)
    metadata = _cache_metadata(model, dataset, collator, batches, dtype, keep_batches)
    cached = _fresh_cache_on_disk(cache_dir, metadata["fingerprint"])
    if cached is not None:
        return cached

    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collator, num_workers=num_workers)
    sink = _DiskSink(cache_dir) if cache_dir is not None else None
    try:
        rows = _prefix_rows(model, zip(batches, loader), len(dataset), dtype, keep_batches, device, sink)
        cache = FrozenPrefixCache(
            hidden_size=model.config.hidden_size,
            dtype=dtype,
            batches=batches if keep_batches else None,
            metadata=metadata,
            **rows,
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


def prefix_batches(
    dataset, batch_size: int, lengths: Sequence[float] | None, batches: list[list[int]] | None, seed: int
) -> list[list[int]]:
    """The batches the prefix is computed in: `batches` when given, else length-sorted batches (jitter 0), else
    dataset order; checked to cover every index of `dataset` exactly once."""
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
    return batches


def _cache_metadata(
    model, dataset, collator, batches: list[list[int]], dtype: torch.dtype, keep_batches: bool
) -> dict:
    """The cache's fingerprint (what its content depends on) and how it was cut."""
    collator_settings = {
        "collator": type(collator).__name__,
        "max_length_seconds": getattr(collator, "max_length_seconds", None),
        "random_crop": getattr(collator, "random_crop", None),
    }
    if collator_settings["random_crop"]:
        logger.warning("The collator crops at random: the crop is drawn once and frozen into the prefix cache.")
    return {
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


def _fresh_cache_on_disk(cache_dir: str | os.PathLike | None, fingerprint: str) -> FrozenPrefixCache | None:
    """The cache in `cache_dir` when it has this fingerprint; None when there is none or it is stale."""
    if cache_dir is None or not (Path(cache_dir) / "index.json").is_file():
        return None
    cached = FrozenPrefixCache.load(cache_dir)
    if cached.metadata.get("fingerprint") == fingerprint:
        logger.info(f"Loaded the frozen-prefix cache from {cache_dir}.")
        return cached
    logger.info(f"The frozen-prefix cache in {cache_dir} is stale (other weights or data): rebuilding it.")
    return None


def _prefix_rows(model, indexed_batches, n: int, dtype: torch.dtype, keep_batches: bool, device, sink) -> dict:
    """Run the prefix on every (indices, batch) → the `FrozenPrefixCache` row fields (offsets, row_lengths,
    num_frames, labels, and the rows themselves unless `sink` writes them to disk)."""
    offsets, row_lengths, num_frames = [0] * n, [0] * n, [0] * n
    labels: list[int] | None = [0] * n
    rows: list[torch.Tensor | None] = [None] * n
    position = 0
    progress = tqdm(total=n, desc="Frozen-prefix cache", unit="clip", disable=None)  # quiet unless a terminal
    for batch_indices, batch in indexed_batches:
        progress.update(len(batch_indices))
        attention_mask = batch.get("attention_mask")
        hidden_states, frame_mask = frozen_prefix_forward(
            model,
            batch["input_values"].to(device),
            None if attention_mask is None else attention_mask.to(device),
        )
        stored = hidden_states.to("cpu", dtype)
        if dtype == torch.float16 and not torch.isfinite(stored).all() and torch.isfinite(hidden_states).all():
            raise ValueError(
                f"The frozen prefix's outputs reach {hidden_states.abs().max().item():.4g}, above float16's largest "
                f"value (65504), for clips {list(batch_indices)}: stored as inf. Set prefix_cache_dtype: bfloat16 "
                "(the same memory, float32's range) or float32."
            )
        hidden_states = stored
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
    progress.close()
    return {
        "offsets": offsets,
        "row_lengths": row_lengths,
        "num_frames": num_frames,
        "labels": labels,
        "rows": None if sink is not None else rows,
    }


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


__all__ = [
    "FrozenPrefixCache",
    "FrozenPrefixCollator",
    "build_prefix_cache",
    "dataset_fingerprint",
    "prefix_batches",
    "prefix_fingerprint",
]
