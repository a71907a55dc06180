"""Training stage 2 from a `FrozenPrefixCache`: `FrozenPrefixTrainer` (samplers and checkpoints for
`FrozenPrefixModel`) and `ReplayBatchesSampler` (the cached batches of padding-dependent backbones, replayed).
See `prefix_model.py` for the whole picture.
"""

import os
import time
from pathlib import Path

import torch

from ..collator import AudioClassificationCollator
from ..trainer.evaluation import trainer_evaluation_batch_size
from ..trainer.sampling import EpochSampler, LengthSortedSampler, evaluation_batches
from ..trainer.trainer import FrameAlignedTrainer
from .cache import FrozenPrefixCache, FrozenPrefixCollator, build_prefix_cache
from .model import FrozenPrefixModel


class ReplayBatchesSampler(EpochSampler):
    """Yields the indices of fixed `batches`, batch after batch, so that `DataLoader(batch_size=B)` re-forms
    exactly these batches: all full batches (in a new random order each epoch when `shuffle`, see `EpochSampler`),
    then the one short batch. Use it for caches of padding-dependent backbones (see `prefix_cache.py`).
    """

    def __init__(self, batches: list[list[int]], batch_size: int, shuffle: bool = True, seed: int = 0):
        super().__init__(seed)
        full = [batch for batch in batches if len(batch) == batch_size]
        short = [batch for batch in batches if len(batch) != batch_size]
        if len(short) > 1 or any(len(batch) > batch_size for batch in short):
            sizes = sorted({len(batch) for batch in batches})
            raise ValueError(
                f"The prefix cache was built with batches of sizes {sizes}, but the DataLoader uses batch_size="
                f"{batch_size}: build the cache with batch_size={batch_size} (the per-device batch size; in "
                "evaluation `trainer_evaluation_batch_size`: 1 for a backbone that sees padding)."
            )
        self.full, self.short = full, short
        self.shuffle = shuffle

    def __len__(self) -> int:
        return sum(len(batch) for batch in self.full + self.short)

    def __iter__(self):
        order = list(range(len(self.full)))
        if self.shuffle:
            order = torch.randperm(len(self.full), generator=self.epoch_generator()).tolist()
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
            return ReplayBatchesSampler(eval_dataset.batches, trainer_evaluation_batch_size(self), shuffle=False)
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


def main_process_builds_first(state, build, cache_dir: Path | None, poll_s: float = 1.0):
    """`build()` on the main process first, then on the others (which then load what it wrote to disk).

    The others wait by polling a marker file next to `cache_dir`, not in a collective: building a large corpus's cache
    can take longer than `ddp_timeout`, and the process-group watchdog would end the job. Without a cache folder or
    with one process: a plain `main_process_first`.
    """
    if cache_dir is None or state.num_processes <= 1:
        with state.main_process_first():
            return build()
    ready = Path(cache_dir).parent / f".{Path(cache_dir).name}.ready"
    if state.is_main_process:
        ready.unlink(missing_ok=True)  # a marker of an earlier run
    state.wait_for_everyone()  # nobody looks for the marker before the stale one is gone
    if state.is_main_process:
        result = build()
        ready.parent.mkdir(parents=True, exist_ok=True)
        ready.touch()
    else:
        while not ready.exists():
            time.sleep(poll_s)
        result = build()
    state.wait_for_everyone()
    return result


def cached_stage_trainer(
    model, args, splits, settings: dict, feature_extractor, cache_dirs: dict[str, Path] | None, state
):
    """A trainer for stage 2 from the frozen prefix's cached output (`stage2.cache_frozen_prefix: true`).

    The training crop is frozen into the cache (the start of each clip, not a random window). Validation batches
    are the same longest-first batches as the uncached evaluation and the final scoring. `cache_dirs` ({"train":
    ..., "validation": ...}) keeps the caches on disk; None keeps them in memory.
    """
    model.freeze_for_training()
    model.to(args.device)
    dtype = getattr(torch, settings["prefix_cache_dtype"])
    cache_dirs = cache_dirs or {"train": None, "validation": None}
    train_collator = AudioClassificationCollator(feature_extractor, settings["max_length_seconds"], random_crop=False)
    validation = splits["validation"]

    def build_both():
        train = build_prefix_cache(
            model,
            splits["train"],
            train_collator,
            batch_size=args.per_device_train_batch_size,
            dtype=dtype,
            cache_dir=cache_dirs["train"],
            seed=args.seed,
        )
        validation_cache = build_prefix_cache(
            model,
            validation,
            AudioClassificationCollator(feature_extractor),
            batch_size=args.per_device_eval_batch_size,
            dtype=dtype,
            cache_dir=cache_dirs["validation"],
            batches=evaluation_batches(validation, args.per_device_eval_batch_size, model.config),
        )
        return train, validation_cache

    train_cache, validation_cache = main_process_builds_first(state, build_both, cache_dirs["train"])
    return FrozenPrefixTrainer(
        model=FrozenPrefixModel(model),
        args=args,
        train_dataset=train_cache,
        eval_dataset=validation_cache,
        data_collator=FrozenPrefixCollator(),
        processing_class=feature_extractor,
    )


__all__ = [
    "FrozenPrefixTrainer",
    "FrozenPrefixTrainerMixin",
    "ReplayBatchesSampler",
    "cached_stage_trainer",
    "main_process_builds_first",
]
