"""`nn.DataParallel` (what the Trainer wraps the model in when `python train.py` runs without torchrun on a machine
with several GPUs): the loss, its logged terms and the gradients equal the single-device ones (issue 21, item 1).

No GPU here: `ChunkingDataParallel` scatters and gathers as `nn.DataParallel` does (`torch.chunk` of every batch
tensor; torch's own `gather`, whose CUDA-only `Gather` is swapped for the same concatenation on the CPU: 0-d
tensors are unsqueezed into a vector, one value per device).
"""

from unittest import mock

import pytest
import torch
from helpers import polish3_clips, tiny_config
from torch.nn.parallel import scatter_gather

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor


class _CpuGather:
    @staticmethod
    def apply(target_device, dim, *inputs):
        if all(t.dim() == 0 for t in inputs) and dim == 0:  # as torch.nn.parallel._functions.Gather
            inputs = tuple(t.view(1) for t in inputs)
        return torch.cat(inputs, dim)


class ChunkingDataParallel(torch.nn.DataParallel):
    """`nn.DataParallel` over `devices` pretend devices of the CPU: one `torch.chunk` of the batch per replica."""

    def __init__(self, module, devices: int):
        super().__init__(module)
        self.device_ids = list(range(devices))

    def forward(self, **kwargs):
        parts = {key: value.chunk(len(self.device_ids)) for key, value in kwargs.items()}
        count = len(next(iter(parts.values())))
        outputs = [self.module(**{key: chunks[i] for key, chunks in parts.items()}) for i in range(count)]
        with mock.patch.object(scatter_gather, "Gather", _CpuGather):
            return scatter_gather.gather(outputs, "cpu", dim=0)


def make_trainer(tmp_path, model):
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True
    )
    return FrameAlignedTrainer(model=model, args=args)


@pytest.mark.parametrize("pooling", ["cls_attention", "attentive"])
def test_data_parallel_loss_terms_and_gradients_equal_the_single_device_ones(tmp_path, pooling):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(
        tiny_config(pooling=pooling, eal_weight=0.3, fual_weight=0.7)
    ).train()
    clips = polish3_clips(5)  # 5 clips on 2 devices: chunks of 3 and 2 (a mean of the two means would be wrong)
    batch = AudioClassificationCollator(make_feature_extractor())([{"audio": p, "label": y} for p, y in clips])
    trainer = make_trainer(tmp_path, model)

    def loss_terms_and_gradients(wrapped):
        model.zero_grad()
        loss = trainer.compute_loss(wrapped, batch)
        loss.backward()
        terms = trainer.loss_terms.pop("train")
        return loss.detach(), terms, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    single_loss, single_terms, single_grads = loss_terms_and_gradients(model)
    parallel_loss, parallel_terms, parallel_grads = loss_terms_and_gradients(ChunkingDataParallel(model, 2))

    assert parallel_loss.dim() == 0
    assert parallel_loss.item() == pytest.approx(single_loss.item(), rel=1e-5)
    assert parallel_terms == pytest.approx(single_terms, rel=1e-5)
    assert set(parallel_grads) == set(single_grads)
    for name, grad in single_grads.items():
        torch.testing.assert_close(parallel_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
