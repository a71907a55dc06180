"""modeling/sampling.py: length-sorted batches, exact DataLoader batch boundaries, per-epoch randomness."""

import csv

import datasets
import torch
from helpers import POLISH3
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import LengthGroupedSampler

from modeling.trainer.sampling import (
    LengthSortedSampler,
    LengthSortedSamplerMixin,
    chunk,
    length_sorted_indices,
    padding_fraction,
)


def durations() -> list[float]:
    with open(POLISH3 / "metadata.csv") as f:
        return [float(row["duration_s"]) for row in csv.DictReader(f)]


def test_padding_fraction_by_hand():
    assert padding_fraction([1, 2, 4, 4], [[0, 1], [2, 3]]) == (4 - 3) / 12


def test_batches_are_full_short_last_longest_first():
    lengths = durations()[:100]
    order = length_sorted_indices(lengths, batch_size=16, generator=torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(100))
    batches = chunk(order, 16)
    assert [len(b) for b in batches] == [16] * 6 + [4]
    full_batch_maxima = [max(lengths[i] for i in batch) for batch in batches[:-1]]
    assert full_batch_maxima[0] == max(full_batch_maxima)  # an out-of-memory error shows at the first step
    assert min(lengths[i] for i in batches[-1]) >= max(full_batch_maxima) * 0.99  # the short batch: longest clips


def test_epochs_differ_and_are_reproducible():
    lengths = durations()
    sampler = LengthSortedSampler(lengths, batch_size=32, seed=3)
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first and second != first
    assert list(LengthSortedSampler(lengths, 32, seed=3)) == first  # without set_epoch: epoch 0, then 1, ...


def test_less_padding_than_transformers_length_grouping():
    lengths = durations()
    torch.manual_seed(0)
    theirs = padding_fraction(lengths, chunk(list(LengthGroupedSampler(32, lengths=lengths)), 32))
    ours = padding_fraction(lengths, chunk(list(LengthSortedSampler(lengths, 32)), 32))
    assert ours < theirs
    sorted_floor = padding_fraction(lengths, chunk(length_sorted_indices(lengths, 32, jitter=0.0), 32))
    assert sorted_floor <= ours


def test_trainer_mixin_uses_it_for_group_by_length(tmp_path):
    dataset = datasets.Dataset.from_dict({"duration_s": durations()[:64]})

    class OurTrainer(LengthSortedSamplerMixin, Trainer):
        pass

    def sampler(strategy):
        args = TrainingArguments(
            output_dir=str(tmp_path),
            report_to=[],
            per_device_train_batch_size=8,
            train_sampling_strategy=strategy,
            length_column_name="duration_s",
            use_cpu=True,
        )
        return OurTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=dataset)._get_train_sampler()

    grouped = sampler("group_by_length")
    assert isinstance(grouped, LengthSortedSampler) and grouped.batch_size == 8
    assert not isinstance(sampler("random"), LengthSortedSampler)


def test_a_legacy_duration_column_gives_the_batches_of_duration_s(tmp_path):
    """Users' datasets may name the seconds `duration` (lhotse's, SpeechBrain's manifests): every length reader
    (FrameAlignedTrainer's train and eval samplers after its column removal, rows of dicts, `longest_first`, the
    prefix cache's batches) reads it as `duration_s`. The audio paths do not exist: no file is opened."""
    from modeling.data.audio_columns import audio_lengths
    from modeling.prefix_cache.cache import prefix_batches
    from modeling.trainer.sampling import longest_first
    from modeling.trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments

    seconds = durations()[:96]  # polish3's real lengths, 3 decimals
    paths = [f"/nonexistent/{i}.wav" for i in range(96)]
    modern = datasets.Dataset.from_dict({"audio": paths, "label": [i % 3 for i in range(96)], "duration_s": seconds})
    legacy = modern.rename_column("duration_s", "duration")
    assert audio_lengths(legacy) == audio_lengths(modern) == seconds  # the values: the seconds given

    def orders(dataset, **settings):
        """(sampler, its order in epochs 0 and 1, the eval order); transformers' defaults otherwise:
        length_column_name="length" (absent), remove_unused_columns=True."""
        arguments = FrameAlignedTrainingArguments(
            output_dir=str(tmp_path), report_to=[], per_device_train_batch_size=8, use_cpu=True, **settings
        )
        trainer = FrameAlignedTrainer(model=torch.nn.Linear(1, 1), args=arguments, train_dataset=dataset)
        kept = trainer._remove_unused_columns(dataset) if isinstance(dataset, datasets.Dataset) else dataset
        sampler = trainer._get_train_sampler(kept)
        epochs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            epochs.append(list(sampler))
        return type(sampler).__name__, epochs, list(trainer._get_eval_sampler(kept))

    grouped = {"train_sampling_strategy": "group_by_length"}
    name, epochs, evaluation = orders(modern, **grouped)
    assert name == "LengthSortedSampler" and epochs[0] != epochs[1]  # a real per-epoch order
    assert orders(legacy, **grouped) == (name, epochs, evaluation)
    balanced = {**grouped, "class_balanced_sampling": True}
    assert orders(legacy, **balanced) == orders(modern, **balanced)
    assert evaluation == longest_first(seconds) == longest_first(legacy) == longest_first(modern)
    rows = [{"audio": path, "duration": s} for path, s in zip(paths, seconds)]  # a list of dicts, not a Dataset
    assert orders(rows, **grouped) == (name, epochs, evaluation)
    assert prefix_batches(legacy, 8, None, None, seed=0) == prefix_batches(modern, 8, None, None, seed=0)
