"""Length-sorted batch order: dynamic padding that wastes (almost) nothing, with randomness kept per epoch.

transformers' `LengthGroupedSampler` (`train_sampling_strategy="group_by_length"`) sorts random *mega-batches*
of up to 50 batches each. On speech corpora whose lengths spread widely that still leaves a few percent of every
batch as padding (see `benchmarks/padding.py`). `LengthSortedSampler` sorts the whole dataset every epoch by a
slightly noisy length (so batch-mates change between epochs), cuts it into batches and shuffles the batch order.
The batches a `DataLoader(batch_size=B)` forms from its index stream are exactly these batches: every batch but
the last is full, and the short one comes last (so `dataloader_drop_last=True` drops only it).

`ClassBalancedSampler` (`class_balanced_sampling=True`) draws every class equally often per epoch and batches
the draw the same way. Plug them into a `Trainer` with `LengthSortedSamplerMixin`.
"""

from collections.abc import Sequence

import torch
from torch.utils.data import Sampler


def padding_fraction(lengths: Sequence[float], batches: Sequence[Sequence[int]]) -> float:
    """Share of padded samples in a list of batches padded to their longest element.

    Args:
        lengths: per-example length (samples or seconds; the unit cancels).
        batches: lists of indices into `lengths`.
    Returns:
        Σ_b (|b|·max_b − Σ_b len) / Σ_b |b|·max_b, in [0, 1).
    """
    padded = real = 0.0
    for batch in batches:
        batch_lengths = [float(lengths[i]) for i in batch]
        padded += len(batch_lengths) * max(batch_lengths)
        real += sum(batch_lengths)
    return 0.0 if padded == 0 else (padded - real) / padded


def chunk(order: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive `batch_size` slices of `order` (the last may be short), as a `DataLoader` forms them."""
    order = list(order)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def length_sorted_indices(
    lengths: Sequence[float], batch_size: int, jitter: float = 0.003, generator: torch.Generator | None = None
) -> list[int]:
    """One epoch of indices whose consecutive `batch_size` slices are batches of similar lengths.

    Steps: sort by a noisy length, `length × exp(jitter × u)` with u ~ U(0, 1) per example and epoch (equal keys in
    random order) → cut into batches (when `len(lengths) % batch_size`, the remainder, the longest clips, forms the
    one short batch) → shuffle the full batches, put the full batch holding the longest clip first (an
    out-of-memory shows at step 1, as in `LengthGroupedSampler`) and the short batch last.

    Why relative length noise: clips whose lengths differ by less than ~`jitter` (0.3 %) trade places, so where
    lengths are dense (most of a corpus) batch-mates change from epoch to epoch, while in the sparse long tail,
    where a swap would cost padding, almost nothing moves. Buckets of k batches shuffled inside (the usual recipe)
    pad every batch to its bucket's longest clip: on IEMOCAP-like lengths k = 2 already pads > 2 %. See
    `benchmarks/padding.py` for padding and batch-mate turnover.

    Args:
        lengths: (N,) lengths of the examples (> 0).
        batch_size: examples per batch (per device).
        jitter: relative length noise; 0 = sorted (random tie-breaks only); larger = more random, more padding.
        generator: the source of randomness (seed it per epoch for reproducible epochs).
    Returns:
        A permutation of range(N).
    """
    if batch_size < 1 or jitter < 0:
        raise ValueError(f"batch_size must be >= 1 and jitter >= 0, got {batch_size} and {jitter}.")
    num_examples = len(lengths)
    if num_examples == 0:
        return []
    lengths_tensor = torch.as_tensor([float(length) for length in lengths], dtype=torch.float64)
    permutation = torch.randperm(num_examples, generator=generator)
    noise = torch.rand(num_examples, generator=generator, dtype=torch.float64)
    keys = lengths_tensor[permutation] * torch.exp(jitter * noise)
    # Ascending: the one short batch (the remainder) gets the longest clips, where it saves the most padding (the
    # sparse long tail); on nemo4 and IEMOCAP-like lengths no other place of the short batch pads less.
    order = permutation[torch.sort(keys, stable=True).indices]
    return _arrange_batches(order.tolist(), lengths_tensor, batch_size, generator)


def _arrange_batches(order: list[int], lengths: torch.Tensor, batch_size: int, generator) -> list[int]:
    """Cut `order` into batches, shuffle the full ones, the one holding the longest clip first, the short one last."""
    batches = chunk(order, batch_size)
    short = batches.pop() if len(batches[-1]) < batch_size else None
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[batches[b]].tolist()))
        batches[0], batches[longest] = batches[longest], batches[0]
    if short is not None:
        batches.append(short)
    return [index for batch in batches for index in batch]


def _spread_copies(order: list[int], batch_size: int) -> list[int]:
    """`order` with each repeated index moved to the next batch that does not hold it yet (consecutive
    `batch_size` slices; a copy moves by a few places, so lengths stay sorted). Copies share a batch only where
    nothing else is left (the end of the epoch)."""
    result, batch, waiting = [], set(), []
    for index in order:
        waiting.append(index)
        for waiting_index in list(waiting):
            if waiting_index not in batch:
                waiting.remove(waiting_index)
                result.append(waiting_index)
                batch.add(waiting_index)
                if len(batch) == batch_size:
                    batch = set()
    return result + waiting


def class_balanced_indices(
    labels: Sequence[int],
    lengths: Sequence[float],
    batch_size: int,
    jitter: float = 0.003,
    generator: torch.Generator | None = None,
) -> list[int]:
    """One epoch of N indices in which every class present occurs N/C times (±1), in length-sorted batches.

    Steps: (1) each of the C classes present gets ⌊N/C⌋ draws, and N mod C random classes one more; (2) a class's
    draws are successive random permutations of its examples, cut at its count (a majority class is subsampled
    without repetition; a minority class repeats each example ⌊k/n⌋ or ⌈k/n⌉ times); (3) the draw is sorted by
    noisy length (as `length_sorted_indices`, each copy with its own noise), and a copy that would join a batch
    already holding its clip moves on to the next batch (`_spread_copies`); (4) batches as in
    `length_sorted_indices`: full ones shuffled, longest first, the short one last. Over an epoch, each class's
    count differs from N/C by at most 1 (exactly uniform up to rounding). Padding: on polish3 with one class cut to
    15 %, batch 16: 4.7 % (length-sorted 2.7 %, the sorted resampled draw without spreading copies 3.2 %, random
    batches 33 %); docs/imbalance_and_soft_labels.md.

    Args:
        labels: (N,) class ids (any hashable ids; only those present count as classes).
        lengths: (N,) lengths (> 0).
        batch_size: examples per batch (per device).
        jitter: relative length noise (see `length_sorted_indices`).
        generator: the source of randomness.
    Returns:
        N indices into range(N), with repetitions (minority classes) and omissions (majority classes).
    """
    if batch_size < 1 or jitter < 0:
        raise ValueError(f"batch_size must be >= 1 and jitter >= 0, got {batch_size} and {jitter}.")
    if len(labels) != len(lengths):
        raise ValueError(f"labels ({len(labels)}) and lengths ({len(lengths)}) must have one entry per example.")
    num_examples = len(labels)
    if num_examples == 0:
        return []
    members: dict = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    classes = sorted(members)
    counts = [num_examples // len(classes)] * len(classes)
    for extra in torch.randperm(len(classes), generator=generator)[: num_examples % len(classes)].tolist():
        counts[extra] += 1
    drawn: list[int] = []
    for label, count in zip(classes, counts):
        indices = members[label]
        for start in range(0, count, len(indices)):
            draw = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
            drawn += draw[: count - start]
    lengths_tensor = torch.as_tensor([float(length) for length in lengths], dtype=torch.float64)
    chosen = torch.as_tensor(drawn, dtype=torch.long)
    noise = torch.rand(len(chosen), generator=generator, dtype=torch.float64)
    keys = lengths_tensor[chosen] * torch.exp(jitter * noise)
    order = _spread_copies(chosen[torch.sort(keys, stable=True).indices].tolist(), batch_size)
    return _arrange_batches(order, lengths_tensor, batch_size, generator)


def longest_first(dataset_or_lengths) -> list[int]:
    """THE evaluation order: row indices by decreasing length (ties by row), so consecutive batches hold clips of
    similar length (little padding) and the order is deterministic.

    Checkpoint selection (`FrameAlignedTrainer`'s evaluation), the frozen-prefix cache's validation batches and the
    final scores (`modeling.training.scoring`, score.py) all batch in this order (`evaluation_batches`), so the
    validation UA a checkpoint was selected on is exactly the one reported.

    Args:
        dataset_or_lengths: a `datasets.Dataset` (lengths as `modeling.data.audio_columns.audio_lengths` reads them:
            its `duration_s` column in seconds, else a legacy `duration` column, else the audio headers), or the (N,)
            lengths themselves.
    Returns:
        A permutation of range(N).
    """
    lengths = dataset_or_lengths
    if hasattr(dataset_or_lengths, "column_names"):
        from ..data.audio_columns import audio_lengths

        lengths = audio_lengths(dataset_or_lengths)
    lengths = [float(length) for length in lengths]
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def evaluation_batch_size(batch_size: int, config=None) -> int:
    """The rows per evaluation batch: `batch_size`, or 1 when the model's outputs depend on padding
    (`config.padding_independent` False: group-norm backbones such as wav2vec2-base, which normalise and attend over
    the zero padding). Then a clip's logits never depend on its batch-mates: train.py's validation and test scores,
    score.py on any corpus (whatever else it holds) and the pipeline / predict.py give the same numbers for the same
    checkpoint and clip. With padded batches a fresh user found one demo clip's probabilities moving by up to 0.34
    with its batch-mates, and a fold's test UA that the published checkpoint did not reproduce."""
    return batch_size if getattr(config, "padding_independent", True) else 1


def evaluation_batches(dataset_or_lengths, batch_size: int, config=None) -> list[list[int]]:
    """THE evaluation batches: `longest_first` order cut into batches of `evaluation_batch_size(batch_size,
    config)` rows.

    Returns:
        Lists of row indices, consecutive in `longest_first` order.
    """
    return chunk(longest_first(dataset_or_lengths), evaluation_batch_size(batch_size, config))


class EpochSampler(Sampler[int]):
    """Base of the samplers whose order in epoch e depends only on (`seed`, e).

    `set_epoch` (called by the Trainer/accelerate every epoch) picks e; without it, each new iteration advances the
    epoch by one. A subclass draws its order in `__iter__` from `self.epoch_generator()`.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.epoch = 0
        self._epoch_was_set = False

    def set_epoch(self, epoch: int):
        self.epoch = epoch
        self._epoch_was_set = True

    def epoch_generator(self) -> torch.Generator:
        """The random source of this iteration's epoch; moves on to the next epoch unless `set_epoch` chose it."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self._epoch_was_set:
            self.epoch += 1
        self._epoch_was_set = False
        return generator


class LengthSortedSampler(EpochSampler):
    """Index sampler yielding `length_sorted_indices` (see there); a new order every epoch (see `EpochSampler`).

    Args:
        lengths: (N,) lengths (seconds or samples) of the examples, in dataset order.
        batch_size: the per-device batch size the `DataLoader` uses.
        jitter: relative length noise (see `length_sorted_indices`).
        seed: base seed.
    """

    def __init__(self, lengths: Sequence[float], batch_size: int, jitter: float = 0.003, seed: int = 0):
        super().__init__(seed)
        self.lengths = [float(length) for length in lengths]
        self.batch_size = batch_size
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_sorted_indices(self.lengths, self.batch_size, self.jitter, self.epoch_generator()))


class ClassBalancedSampler(EpochSampler):
    """Index sampler yielding `class_balanced_indices` (see there): every class equally often per epoch, batches
    length-sorted; a new draw every epoch (see `EpochSampler`). `len()` is N, so an epoch has as many steps as
    with `LengthSortedSampler`.

    Args:
        labels: (N,) class ids, in dataset order.
        lengths: (N,) lengths (seconds or samples).
        batch_size: the per-device batch size the `DataLoader` uses.
        jitter: relative length noise.
        seed: base seed.
    """

    def __init__(
        self, labels: Sequence[int], lengths: Sequence[float], batch_size: int, jitter: float = 0.003, seed: int = 0
    ):
        super().__init__(seed)
        self.labels = list(labels)
        self.lengths = [float(length) for length in lengths]
        self.batch_size = batch_size
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = self.epoch_generator()
        return iter(class_balanced_indices(self.labels, self.lengths, self.batch_size, self.jitter, generator))


class LengthSortedSamplerMixin:
    """Trainer mixin: `train_sampling_strategy="group_by_length"` uses `LengthSortedSampler` instead of
    transformers' `LengthGroupedSampler`, on any `datasets.Dataset` with lengths or audio; with
    `args.class_balanced_sampling`, `ClassBalancedSampler` (length-sorted batches with `group_by_length`).

    Lengths (`modeling.data.audio_columns.audio_lengths`): the dataset's `args.length_column_name` column, else its
    `duration_s` column (seconds), else a legacy `duration` column (seconds: lhotse's and SpeechBrain's manifests),
    else the audio column's file headers or embedded bytes (the collator's
    `audio_column`, default `audio`; read once per Trainer, no full decode). Other datasets fall back to
    transformers' sampler. Usage: `class Trainer(LengthSortedSamplerMixin, FrameAlignedTrainer): pass`;
    `length_sort_jitter` (class attribute) sets the jitter.
    """

    length_sort_jitter: float = 0.003

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = self.train_dataset if train_dataset is None else train_dataset
        balanced = getattr(self.args, "class_balanced_sampling", False)
        by_length = self.args.train_sampling_strategy == "group_by_length"
        if not (by_length or balanced):
            return super()._get_train_sampler(train_dataset)
        lengths = self._train_lengths(train_dataset) if by_length else None
        if balanced:  # without lengths (another strategy): equal lengths, i.e. a random order of the balanced draw
            return ClassBalancedSampler(
                self._sampler_labels(train_dataset),
                lengths or [1.0] * len(train_dataset),
                batch_size=self.args.per_device_train_batch_size,
                jitter=self.length_sort_jitter,
                seed=self.args.seed,
            )
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthSortedSampler(
            lengths,
            batch_size=self.args.per_device_train_batch_size,
            jitter=self.length_sort_jitter,
            seed=self.args.seed,
        )

    def _sampler_labels(self, train_dataset) -> list[int]:
        """The consensus label ids the class-balanced sampler balances (the collator's `label_column`)."""
        column = getattr(getattr(self, "data_collator", None), "label_column", None) or "label"
        if column in (getattr(train_dataset, "column_names", None) or []):
            return list(train_dataset[column])
        return [train_dataset[i][column] for i in range(len(train_dataset))]

    def _get_eval_sampler(self, eval_dataset):
        """Evaluation (and prediction) runs `longest_first` when `args.eval_longest_first` says so (default: with
        `group_by_length`): little padding, deterministic; transformers' own eval sampler would need an `input_ids`
        column or `length_column_name` and raises otherwise."""
        longest = getattr(self.args, "eval_longest_first", None)
        if longest is None:
            longest = self.args.train_sampling_strategy == "group_by_length"
        if not longest or eval_dataset is None:
            return super()._get_eval_sampler(eval_dataset)
        lengths = self._train_lengths(eval_dataset)
        if lengths is None:
            return super()._get_eval_sampler(eval_dataset)
        return longest_first(lengths)

    def _train_lengths(self, train_dataset) -> list[float] | None:
        from datasets import Dataset

        from ..data.audio_columns import audio_lengths, duration_column

        column = self.args.length_column_name
        column_names = getattr(train_dataset, "column_names", None) or []
        audio_column = getattr(getattr(self, "data_collator", None), "audio_column", None) or "audio"
        if not isinstance(train_dataset, Dataset):
            if column in column_names:
                return [float(length) for length in train_dataset[column]]
            return _row_lengths(train_dataset, audio_column)
        cached = getattr(self, "_length_cache", None)
        if cached is not None and cached[0] == train_dataset._fingerprint:
            return cached[1]
        if audio_column not in column_names and duration_column(column_names, column) is None:
            return None
        lengths = audio_lengths(train_dataset, audio_column, column)
        self._length_cache = (train_dataset._fingerprint, lengths)
        return lengths


def _row_lengths(dataset, audio_column: str) -> list[float] | None:
    """Lengths (seconds) of a map-style dataset of dicts (e.g. a list of `{"audio": AudioDecoder, ...}`), each as
    `modeling.data.audio_columns.row_duration` reads it (`duration_s`, else `duration`, else the audio header), or
    None when its rows hold no such audio."""
    from collections.abc import Mapping

    from ..data.audio_columns import row_duration

    if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__") or len(dataset) == 0:
        return None
    first = dataset[0]
    if not isinstance(first, Mapping) or audio_column not in first:
        return None
    return [row_duration(row, audio_column) for row in dataset]


__all__ = [
    "ClassBalancedSampler",
    "EpochSampler",
    "LengthSortedSampler",
    "LengthSortedSamplerMixin",
    "chunk",
    "class_balanced_indices",
    "evaluation_batch_size",
    "evaluation_batches",
    "longest_first",
    "length_sorted_indices",
    "padding_fraction",
]
