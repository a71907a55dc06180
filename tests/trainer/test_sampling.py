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
    dataset = datasets.Dataset.from_dict({"duration": durations()[:64]})

    class OurTrainer(LengthSortedSamplerMixin, Trainer):
        pass

    def sampler(strategy):
        args = TrainingArguments(
            output_dir=str(tmp_path),
            report_to=[],
            per_device_train_batch_size=8,
            train_sampling_strategy=strategy,
            length_column_name="duration",
            use_cpu=True,
        )
        return OurTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=dataset)._get_train_sampler()

    grouped = sampler("group_by_length")
    assert isinstance(grouped, LengthSortedSampler) and grouped.batch_size == 8
    assert not isinstance(sampler("random"), LengthSortedSampler)
