"""Releasing a finished stage's model at once (`release_trainer`), so that the next stage or fold starts with the
GPU memory free.

accelerate's mixed precision replaces the model's `forward` by a bound method of the model itself (autocast +
fp32 outputs): a reference cycle. Without a garbage collection (Python runs one when it decides to) the stage's
weights, gradients and optimizer state stay allocated while the next stage loads its own.
"""

import torch


def release_trainer(trainer) -> None:
    """Drop every reference the trainer and its accelerator hold to the model, optimizer and scheduler, and undo
    accelerate's forward patch (the cycle), so the model is freed when the caller's last reference goes. The trainer
    cannot train or evaluate afterwards."""
    model = trainer.model
    if model is not None:
        inner = trainer.accelerator.unwrap_model(model)
        for module in {id(m): m for m in (model, inner)}.values():
            for name in ("forward", "_original_forward"):  # instance attributes: bound methods of the model itself
                if name in vars(module) and getattr(vars(module)[name], "__self__", None) is module:
                    del vars(module)[name]
    trainer.accelerator.free_memory()  # its lists of prepared models, optimizers, schedulers, dataloaders
    trainer.model = trainer.model_wrapped = trainer.optimizer = trainer.lr_scheduler = None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


__all__ = ["release_trainer"]
