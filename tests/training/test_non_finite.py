"""A NaN or Inf in the loss, logits or embeddings stops training at once with an error naming fold, stage and step
(issue 15: it used to surface at the end of the run as a plotting library's error about NaN input)."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import polish3_clips, tiny_config
from transformers import TrainerCallback

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments, NonFiniteError


pytestmark = pytest.mark.bad_input


class Poison(TrainerCallback):
    """After optimizer step `after_step`, write `value` into one weight of `module_name` (as a diverging update or
    an fp16 overflow would)."""

    def __init__(self, module_name: str, after_step: int, value: float):
        self.module_name, self.after_step, self.value = module_name, after_step, value

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.after_step:
            with torch.no_grad():
                next(model.get_submodule(self.module_name).parameters()).view(-1)[0] = self.value


def trainer_for(tmp_path, poison: Poison) -> FrameAlignedTrainer:
    clips = polish3_clips(4)
    dataset = Dataset.from_dict({"audio": [path for path, _ in clips], "label": [label for _, label in clips]})
    torch.manual_seed(0)
    args = FrameAlignedTrainingArguments(
        output_dir=str(tmp_path / "run" / "fold3" / "stage2"),
        per_device_train_batch_size=2,
        max_steps=4,
        report_to="none",
        remove_unused_columns=False,
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
    )
    return FrameAlignedTrainer(
        model=Wav2Vec2ForFrameAlignedClassification(tiny_config()),
        args=args,
        train_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor(), max_length_seconds=0.5),
        callbacks=[poison],
    )


CASES = {
    # a NaN classifier weight: the logits (and so the loss) of the next step, not the embeddings
    "NaN classifier weight": (Poison("classifier", 1, math.nan), r"loss, logits\."),
    # an Inf in the last backbone layer: every embedding downstream is non-finite
    "Inf backbone weight": (
        Poison("wav2vec2.encoder.layers.1.final_layer_norm", 2, math.inf),
        r"loss, logits, utterance_embedding, frame_embeddings\.",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_non_finite_values_stop_training_naming_fold_stage_and_step(tmp_path, case):
    poison, names = CASES[case]
    trainer = trainer_for(tmp_path, poison)
    step = poison.after_step + 1
    with pytest.raises(
        NonFiniteError, match=rf"^fold3, stage2, training step {step}: non-finite values \(NaN or Inf\) in {names}"
    ):
        trainer.train()
    assert trainer.state.global_step == poison.after_step  # stopped at once, no further optimizer step
    assert all(np.isfinite(log["loss"]) for log in trainer.state.log_history if "loss" in log)
