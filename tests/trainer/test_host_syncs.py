"""No host synchronisation in the training step's hot path (issue 21, item 5): the forward, the loss terms, the
non-finite check and the backward leave every value on the device; the loss terms and the non-finite flags are read
once per logging step.

A GPU would show a sync with `torch.cuda.set_sync_debug_mode`; here a dispatch-mode tracer counts the operations
that wait for the device: reading a value (`aten._local_scalar_dense`: `item()`, `float()`, `bool()`), a
data-dependent shape (`nonzero`, `masked_select`: boolean indexing), and `Tensor.tolist()` / `.numpy()`.
"""

import math

import pytest
import torch
from datasets import Dataset
from helpers import polish3_clips, tiny_config
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import TrainerCallback

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.trainer import NonFiniteError


SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal", "_unique2", "unique_dim"}
SYNCING_METHODS = {"tolist", "numpy", "item", "__bool__", "__float__", "__int__", "__index__"}


class HostSyncCounter(TorchDispatchMode):
    """Counts the device-waiting operations run while active (`syncs`: their names, in order)."""

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.syncs.append(name)
        elif name in ("index", "index_put", "index_put_") and any(  # boolean indexing: a nonzero inside
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in args[1] or ()
        ):
            self.syncs.append(f"{name}[bool]")
        return func(*args, **(kwargs or {}))


class HostReadCounter(TorchFunctionMode):
    """Counts `Tensor.tolist()`, `.item()`, `bool(tensor)`, ... (on the CPU `tolist` dispatches no operation)."""

    def __init__(self, syncs: list):
        super().__init__()
        self.syncs = syncs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in SYNCING_METHODS:
            self.syncs.append(name)
        return func(*args, **(kwargs or {}))


class CountingTrainer(FrameAlignedTrainer):
    """Counts the syncs of each `training_step` (forward, loss terms, non-finite check, backward)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.syncs_per_step = []

    def training_step(self, *args, **kwargs):
        counter = HostSyncCounter()
        with counter, HostReadCounter(counter.syncs):
            loss = super().training_step(*args, **kwargs)
        self.syncs_per_step.append(counter.syncs)
        return loss


@pytest.fixture(scope="module")
def dataset():
    clips = polish3_clips(4)
    return Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]})


def make_trainer(tmp_path, dataset, model, callbacks=(), **args):
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    trainer = CountingTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(**{**settings, **args}),
        train_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor(), max_length_seconds=0.5),
        callbacks=list(callbacks),
    )
    trainer.defer_non_finite_check = True  # what an accelerator gets (on the CPU the check is read at once)
    return trainer


@pytest.mark.parametrize("pooling", ["cls_attention", "attentive"])
def test_a_training_step_does_not_wait_for_the_device(tmp_path, dataset, pooling):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(pooling=pooling, eal_weight=0.3, fual_weight=0.7))
    trainer = make_trainer(tmp_path, dataset, model)
    trainer.train()
    assert trainer.syncs_per_step == [[]] * 4
    logged = [log for log in trainer.state.log_history if "loss_ce" in log]
    assert len(logged) == 2 and all(log["loss_ce"] > 0 for log in logged)


class Poison(TrainerCallback):
    """After optimizer step 1, a NaN in the classifier (as a diverging update would)."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == 1:
            with torch.no_grad():
                model.classifier.weight.view(-1)[0] = math.nan


def test_a_deferred_non_finite_check_names_the_step_at_the_next_logging_step(tmp_path, dataset):
    """Step 2 has NaN logits and loss; read at logging step 3 (logging every 3 steps): the error names step 2, and no
    non-finite loss was logged."""
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(pooling="attentive"))
    trainer = make_trainer(tmp_path, dataset, model, callbacks=[Poison()], logging_steps=3, max_steps=6)
    with pytest.raises(NonFiniteError, match=r"training step 2: non-finite values \(NaN or Inf\) in loss, logits\."):
        trainer.train()
    assert trainer.state.global_step == 3
    assert not [log for log in trainer.state.log_history if "loss" in log]
