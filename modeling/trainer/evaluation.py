"""The Trainer's evaluation, batched and computed as the final scoring is (`evaluation_loop_like_scoring`).

The checkpoint of a stage is selected on its validation UA; the fold's report scores the saved best model again
(`modeling.training.scoring.predict`: longest-first batches of `eval_batch_size`, whole clips, fp32, one process).
The selected UA equals the reported one only if evaluation gives the same predictions. transformers' own loop breaks
that in two ways on GPUs:

- under DDP, accelerate pads the last evaluation batch with the first (longest) clips. A backbone without an
  attention mask (group-norm CNN, like wav2vec2-base) sees the padding, so the clips of that batch get other
  predictions than in the scoring;
- with `bf16`/`fp16`, the model's forward runs under autocast (accelerate patches it), the scoring in fp32.

Here each process takes every `world_size`-th of the single-process batches (the same batches, none padded), runs the
model's class `forward` (not accelerate's autocast-patched one) with autocast off, and the logits, labels and
loss sums are gathered: every process gets the single-process result. The loss and its terms are sample-weighted
means, as transformers' `eval_loss`.
"""

import logging

import numpy as np
import torch
from accelerate.utils import gather_object
from torch.utils.data import DataLoader
from transformers.trainer_utils import EvalLoopOutput, EvalPrediction, denumpify_detensorize

from .sampling import chunk, evaluation_batch_size


logger = logging.getLogger(__name__)


def trainer_evaluation_batch_size(trainer) -> int:
    """`per_device_eval_batch_size`, or 1 for a model whose outputs depend on padding (`evaluation_batch_size`)."""
    config = getattr(trainer.accelerator.unwrap_model(trainer.model), "config", None)
    size = evaluation_batch_size(trainer.args.per_device_eval_batch_size, config)
    if size < trainer.args.per_device_eval_batch_size and not getattr(trainer, "_told_evaluation_batch_size", False):
        trainer._told_evaluation_batch_size = True
        logger.info(
            "evaluation runs one clip per batch (eval batch size %d unused): this backbone (feat_extract_norm=%s, "
            "attention mask: %s) sees the padding, which would make a clip's scores depend on its batch-mates",
            trainer.args.per_device_eval_batch_size,
            getattr(config, "feat_extract_norm", None),
            getattr(config, "use_backbone_attention_mask", None),
        )
    return size


def single_process_batches(trainer, dataset) -> list[list[int]]:
    """The evaluation batches one process would form: the trainer's eval sampler order, in runs of
    `trainer_evaluation_batch_size`."""
    sampler = trainer._get_eval_sampler(dataset)
    order = list(iter(sampler)) if sampler is not None else list(range(len(dataset)))
    return chunk(order, trainer_evaluation_batch_size(trainer))


def evaluation_loop_like_scoring(trainer, dataloader, metric_key_prefix: str = "eval") -> EvalLoopOutput:
    """`Trainer.evaluation_loop` computed as the final scoring (see the module docstring); every process returns
    the same `EvalLoopOutput` (predictions = logits in the eval sampler's order)."""
    dataset = dataloader.dataset
    batches = single_process_batches(trainer, dataset)
    state = trainer.accelerator.state
    mine = list(range(state.process_index, len(batches), state.num_processes))

    def loader_of(batch_sampler):
        workers, pin = trainer.args.dataloader_num_workers, trainer.args.dataloader_pin_memory
        return DataLoader(
            dataset, batch_sampler=batch_sampler, collate_fn=dataloader.collate_fn, num_workers=workers, pin_memory=pin
        )

    trainer.callback_handler.eval_dataloader = loader_of(batches)  # as transformers' loop: callbacks see the batches
    loader = loader_of([batches[i] for i in mine])
    model = trainer.model
    config = trainer.accelerator.unwrap_model(model).config
    model.eval()
    results = []
    with torch.no_grad(), torch.autocast(trainer.args.device.type, enabled=False):
        for index, batch in zip(mine, loader):
            batch = trainer._prepare_inputs(batch)
            outputs = type(model).forward(model, **batch)  # not accelerate's autocast-patched instance forward
            loss, terms = trainer.loss_and_terms(outputs, config)
            trainer._check_finite(loss, outputs, training=False)
            sums = torch.stack([loss, *terms.values()]).float() * len(batch["labels"])
            logits, labels = outputs.logits.float().cpu().numpy(), batch["labels"].cpu().numpy()
            results.append((index, logits, labels, sums.cpu(), list(terms)))
    if state.num_processes > 1:
        results = gather_object(results)
    results.sort(key=lambda result: result[0])
    logits = np.concatenate([result[1] for result in results])
    labels = np.concatenate([result[2] for result in results])
    means = (torch.stack([result[3] for result in results]).sum(0) / len(labels)).tolist()
    metrics = {}
    if trainer.compute_metrics is not None:
        metrics = trainer.compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    metrics["loss"] = means[0]
    metrics.update({name: round(value, 6) for name, value in zip(results[0][4], means[1:])})
    metrics = {
        key if key.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{key}": value
        for key, value in metrics.items()
    }
    metrics = denumpify_detensorize(metrics)
    return EvalLoopOutput(predictions=logits, label_ids=labels, metrics=metrics, num_samples=len(labels))


__all__ = ["evaluation_loop_like_scoring", "single_process_batches", "trainer_evaluation_batch_size"]
