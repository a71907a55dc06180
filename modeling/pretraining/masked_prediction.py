"""FLEA's continued pre-training (phase 2): HuBERT-style masked prediction of the frames' pseudo labels.

Spans of frames are masked along time with the backbone's own mask computation (transformers'
`_compute_mask_indices` of the backbone's module, with the config's `mask_time_prob`, `mask_time_length` and
`mask_time_min_masks`); masked frames are replaced by the backbone's learnt `masked_spec_embed`; a linear projection
of the last layer predicts each frame's cluster id, and the loss is the cross-entropy over the masked frames only
(HuBERT's α = 1: unmasked frames contribute nothing). Hsu et al. 2021 (HuBERT), Eq. 2; Li et al. (FLEA).
"""

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import Trainer

from ..audio import TARGET_SAMPLING_RATE, load_audio
from ..frames import frame_geometry, frames_for_samples
from ..rundir.faults import fault_point
from ..trainer.checkpointing import VerifiedCheckpointMixin


IGNORE_INDEX = -100


def span_mask(backbone, batch_size: int, frames: int, frame_attention_mask: torch.Tensor | None = None) -> np.ndarray:
    """(batch_size, frames) bool: the time spans to mask, drawn as the backbone's own SpecAugment draws them
    (`_compute_mask_indices` of the backbone's transformers module; numpy's global RNG, which the Trainer's
    checkpoints save and restore). `frame_attention_mask`: (batch, frames), 0 on padding frames (never masked)."""
    module = sys.modules[type(backbone).__module__]
    compute = getattr(module, "_compute_mask_indices", None)
    if compute is None:
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices as compute
    config = backbone.config
    return compute(
        (batch_size, frames),
        mask_prob=config.mask_time_prob,
        mask_length=config.mask_time_length,
        attention_mask=frame_attention_mask,
        min_masks=config.mask_time_min_masks,
    )


def masked_prediction_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked frames.

    Args:
        logits: (batch, frames, clusters).
        targets: (batch, frames) cluster ids; `IGNORE_INDEX` (-100) on padding.
        mask: (batch, frames) bool, True where the frame was masked.
    Returns:
        A scalar: Σ_{masked t} −log softmax(logits_t)[target_t] / #masked (0 when nothing is masked).
    """
    selected = mask & (targets != IGNORE_INDEX)
    if not selected.any():
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits[selected].float(), targets[selected])


class MaskedPseudoLabelModel(nn.Module):
    """A backbone (`*Model`) and a linear projection of its last layer onto the clusters.

    forward(input_values (batch, samples), attention_mask (batch, samples), labels (batch, frames)) → {"loss",
    "logits" (batch, frames, clusters), "mask" (batch, frames)}; in training mode the spans are drawn here
    (`span_mask`), in evaluation mode nothing is masked unless `mask_time_indices` is given.
    """

    def __init__(self, backbone: nn.Module, clusters: int):
        super().__init__()
        if getattr(backbone, "masked_spec_embed", None) is None:
            raise ValueError("the backbone has no masked_spec_embed: build it with mask_time_prob > 0.")
        self.backbone = backbone
        self.config = backbone.config
        self.projection = nn.Linear(backbone.config.hidden_size, clusters)

    def activation_checkpointing_enable(self, **kwargs):
        """`training.activation_checkpointing` (the Trainer calls it): the backbone's layers recompute their
        activations in backward (the backbone's own `activation_checkpointing_enable`)."""
        self.backbone.activation_checkpointing_enable(**kwargs)

    def forward(self, input_values, attention_mask=None, labels=None, mask_time_indices=None):
        frames = frames_for_samples(input_values.shape[1], *frame_geometry(self.config))
        frame_mask = None
        if attention_mask is not None:
            frame_mask = self.backbone._get_feature_vector_attention_mask(frames, attention_mask)
        if mask_time_indices is None and self.training:
            drawn = span_mask(self.backbone, input_values.shape[0], frames, frame_mask)
            mask_time_indices = torch.tensor(drawn, device=input_values.device, dtype=torch.bool)
        outputs = self.backbone(input_values, attention_mask=attention_mask, mask_time_indices=mask_time_indices)
        logits = self.projection(outputs.last_hidden_state)
        result = {"logits": logits}
        if mask_time_indices is not None:
            result["mask"] = mask_time_indices
        if labels is not None:
            mask = mask_time_indices if mask_time_indices is not None else torch.zeros_like(labels, dtype=torch.bool)
            result["loss"] = masked_prediction_loss(logits, labels, mask)
        return result


class PseudoLabelDataset(torch.utils.data.Dataset):
    """Clips and their frames' cluster ids: item i = {"audio": files[i], "labels": ids (frames,)}."""

    def __init__(self, pseudo_labels):
        self.pseudo_labels = pseudo_labels

    def __len__(self) -> int:
        return len(self.pseudo_labels.files)

    def __getitem__(self, i: int) -> dict:
        return {"audio": self.pseudo_labels.files[i], "labels": self.pseudo_labels.clip(i)}


@dataclass
class PseudoLabelCollator:
    """Whole clips, normalised and padded (`feature_extractor`), and their ids padded with -100 to the batch's frames.
    A clip's ids must number its frames (`frames_for_samples`); a mismatch raises `ValueError` naming the file."""

    feature_extractor: object
    config: object

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        hop, receptive_field = frame_geometry(self.config)
        arrays = [load_audio(example["audio"], min_samples=receptive_field) for example in examples]
        batch = self.feature_extractor(
            arrays, sampling_rate=TARGET_SAMPLING_RATE, padding="longest", return_attention_mask=True,
            return_tensors="pt",
        )  # fmt: skip
        frames = frames_for_samples(batch["input_values"].shape[1], hop, receptive_field)
        labels = torch.full((len(examples), frames), IGNORE_INDEX, dtype=torch.long)
        for row, (example, array) in enumerate(zip(examples, arrays)):
            ids = torch.as_tensor(example["labels"], dtype=torch.long)
            expected = frames_for_samples(len(array), hop, receptive_field)
            if len(ids) != expected:
                raise ValueError(f"{example['audio']}: {len(ids)} pseudo labels for {expected} frames.")
            labels[row, : len(ids)] = ids
        return {"input_values": batch["input_values"], "attention_mask": batch["attention_mask"], "labels": labels}


class MaskedPredictionTrainer(VerifiedCheckpointMixin, Trainer):
    """The Trainer of stage 0: the model's masked-prediction loss; verified checkpoints (`VerifiedCheckpointMixin`);
    fault point `stage0:step<n>` before each training step's loss is returned (crash tests)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs["loss"]
        if model.training:
            fault_point(f"stage0:step{self.state.global_step + 1}")
        if not torch.isfinite(loss).all():
            raise FloatingPointError(f"stage 0, step {self.state.global_step + 1}: non-finite masked-prediction loss.")
        return (loss, outputs) if return_outputs else loss


__all__ = [
    "IGNORE_INDEX",
    "MaskedPredictionTrainer",
    "MaskedPseudoLabelModel",
    "PseudoLabelCollator",
    "PseudoLabelDataset",
    "masked_prediction_loss",
    "span_mask",
]
