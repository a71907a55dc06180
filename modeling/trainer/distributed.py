"""What `DistributedDataParallel` needs for a frame-aligned model, found by running it (`ddp_settings`).

DDP's default assumes every trainable parameter gets a gradient in every step; a parameter that gets none stalls the
gradient reduction ("Expected to have finished reduction in the prior iteration" at step 2, or a hang) unless
`find_unused_parameters=True`, which costs a walk of the autograd graph in every step. Rather than a list of the config
fields known to leave a parameter unused (SpecAugment's `masked_spec_embed` with `apply_spec_augment=False`,
a weighted layer sum's unused layers, a pooling's unused part, ...), the model is run: one training step's forward and
backward on a short batch of noise shows which trainable parameters get no gradient. Only a random skip cannot be
seen in one step: LayerDrop.
"""

import os
import random

import numpy as np
import torch

from .trainer import auxiliary_losses, frame_aligned_model


PROBE_SECONDS = 1.0  # long enough for SpecAugment's time masks (mask_time_length=10 frames = 0.2 s)
PROBE_BATCH = 2


def parameters_without_gradient(model: torch.nn.Module, sampling_rate: int = 16000) -> list[str]:
    """Names of the trainable parameters of `model` that get no gradient in a training step.

    The step is the `FrameAlignedTrainer`'s (cross-entropy + λ_EAL·EAL + λ_FUAL·FUAL) on `PROBE_BATCH` clips of
    `PROBE_SECONDS` seconds of seeded noise, in training mode, on the model's device. Nothing of it remains: the RNG
    states (torch, numpy, random: dropout and SpecAugment draw from them), the buffers, the gradients and each module's
    training flag are restored, so a seeded run trains exactly as without the probe.
    """
    config = frame_aligned_model(model).config
    parameters = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
    if not parameters:
        return []
    device = next(iter(parameters.values())).device
    generator = torch.Generator().manual_seed(0)
    num_samples = int(PROBE_SECONDS * sampling_rate)
    inputs = {
        "input_values": torch.randn(PROBE_BATCH, num_samples, generator=generator).to(device),
        "attention_mask": torch.ones(PROBE_BATCH, num_samples, dtype=torch.long, device=device),
        "labels": torch.arange(PROBE_BATCH, device=device) % config.num_labels,
    }
    training = {module: module.training for module in model.modules()}
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    grads = {name: parameter.grad for name, parameter in parameters.items()}
    numpy_state, python_state = np.random.get_state(), random.getstate()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for parameter in parameters.values():
                parameter.grad = None
            model.train()
            outputs = model(**inputs)
            terms = auxiliary_losses(outputs, config)
            loss = outputs.loss + config.eal_weight * terms["loss_eal"] + config.fual_weight * terms["loss_fual"]
            loss.backward()
            return [name for name, parameter in parameters.items() if parameter.grad is None]
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        for name, parameter in parameters.items():
            parameter.grad = grads[name]
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        for module, mode in training.items():
            module.training = mode


def ddp_settings(model: torch.nn.Module) -> dict:
    """`find_unused_parameters` / `static_graph` for DDP, as `TrainingArguments` fields (used under torchrun only).

    `find_unused_parameters=True` when a training step leaves a trainable parameter without a gradient
    (`parameters_without_gradient`) or when LayerDrop (`config.layerdrop > 0` with trainable layers) skips a random
    subset of layers in each step; otherwise `False` (no graph walk per step; the Trainer's default turns it off with
    activation checkpointing, which is non-reentrant here, `use_reentrant=False`, so that it works with `True` too).
    Never a static graph: LayerDrop changes the graph from step to step. Outside torchrun (`WORLD_SIZE` ≤ 1) the
    fields do nothing and the probe is skipped: `{}`.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return {}
    inner = frame_aligned_model(model)
    config = inner.config
    trainable_layers = config.num_hidden_layers - getattr(inner, "num_frozen_layers", 0)
    layerdrop = getattr(config, "layerdrop", 0.0) > 0 and trainable_layers > 0
    unused = bool(parameters_without_gradient(model))
    return {"ddp_find_unused_parameters": layerdrop or unused, "ddp_static_graph": False}


__all__ = ["PROBE_SECONDS", "ddp_settings", "parameters_without_gradient"]
