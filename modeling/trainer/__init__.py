"""`FrameAlignedTrainer` for Trainer users: CE + λ_EAL·EAL + λ_FUAL·FUAL, one learning rate per parameter group, the
length-sorted sampler (`sampling`). The experiment behind train.py (`modeling.training`) and the frozen-prefix cache
(`modeling.prefix_cache`) build on it."""

from .sampling import LengthSortedSampler, LengthSortedSamplerMixin, longest_first
from .trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments


__all__ = [
    "FrameAlignedTrainer",
    "FrameAlignedTrainingArguments",
    "LengthSortedSampler",
    "LengthSortedSamplerMixin",
    "longest_first",
]
