"""Issue 20 (D3): `stage0_training_arguments` spelled its own fixed TrainingArguments (report_to, seeds,
remove_unused_columns, pin memory, use_cpu, ...) beside the ones stages 1 and 2 take from
`stage.fixed_training_argument_values` (schema.py's `FIXED_TRAINING_ARGUMENTS` among them): two owners, and stage 0
had drifted (no `activation_checkpointing_kwargs`, transformers' `length_column_name`). Stage 0 now takes the shared
values and overrides only `stage0.STAGE0_OVERRIDES`, each with its reason."""

import dataclasses

import numpy as np
import pytest
from runs import write_config
from transformers import TrainingArguments

from modeling.data.folds import Fold
from modeling.pretraining.masked_prediction import PseudoLabelDataset
from modeling.pretraining.pseudo_labels import PseudoLabels
from modeling.training import schema
from modeling.training.config_checks import resolve_checked_config
from modeling.training.stage import training_arguments
from modeling.training.stage0 import STAGE0_OVERRIDES, stage0_training_arguments


# Fields each stage sets for itself, by design: its folder, its seed (seed + 1000·fold + 0/500/250), its tracker
# name, and stages 1/2's checkpoint selection (stage1/stage2.metric_for_best_model; stage 0 selects nothing).
PER_STAGE = {"output_dir", "seed", "data_seed", "run_name", "metric_for_best_model", "greater_is_better"}
# Fields the config's declared options set per section (epochs, batch size, learning rate, ...: `to_args`).
DECLARED = {name for section in ("stage0", *schema.STAGES) for o in schema.options(section).values() for name in
            o.meta["to_args"]}  # fmt: skip
# Fields TrainingArguments derives from eval_strategy (an override) in its __post_init__.
DERIVED = {"do_eval"}


@pytest.fixture(scope="module")
def arguments(tmp_path_factory) -> dict[str, TrainingArguments]:
    """{stage: TrainingArguments} of fold 1 of a tiny config (activation checkpointing on, so its kwargs are set)."""
    tmp = tmp_path_factory.mktemp("stage0_arguments")
    config = resolve_checked_config(write_config(tmp / "run.yaml", training={"activation_checkpointing": True}))
    fold = Fold(1, ("m3",), ("m2",), ("m1",))
    built = {stage: training_arguments(config, stage, fold, tmp / stage) for stage in schema.STAGES}
    return {"stage0": stage0_training_arguments(config, fold, tmp / "stage0"), **built}


@pytest.mark.parametrize("stage", schema.STAGES)
def test_stage0_takes_every_fixed_value_of_the_other_stages_but_its_documented_overrides(arguments, stage):
    compared = [
        f.name
        for f in dataclasses.fields(TrainingArguments)
        if f.name not in {*STAGE0_OVERRIDES, *PER_STAGE, *DECLARED, *DERIVED}
    ]
    stage0, other = arguments["stage0"], arguments[stage]
    differ = {name: (getattr(stage0, name), getattr(other, name)) for name in compared}
    assert {name: pair for name, pair in differ.items() if pair[0] != pair[1]} == {}
    # the values that drifted before, spelled out: schema.py's and stage.py's reach stage 0
    fixed = {name: value for name, (value, _) in schema.FIXED_TRAINING_ARGUMENTS.items() if value is not None}
    fixed.pop("train_sampling_strategy")  # an override
    assert {name: getattr(stage0, name) for name in fixed} == fixed
    assert stage0.activation_checkpointing_kwargs == {"use_reentrant": False} and stage0.disable_tqdm is False
    assert stage0.report_to == []  # "none"


def test_stage0_overrides_are_its_own_and_why_they_hold(arguments):
    stage0 = arguments["stage0"]
    assert {name: getattr(stage0, name) for name in STAGE0_OVERRIDES} == {
        "eval_strategy": "no",
        "train_sampling_strategy": "random",
    }
    for stage in schema.STAGES:  # each override differs from what stages 1 and 2 take
        assert all(getattr(arguments[stage], name) != value for name, value in STAGE0_OVERRIDES.items())
    assert stage0.metric_for_best_model is None and stage0.seed == stage0.data_seed == 7 + 1000 + 250
    assert stage0.save_strategy == "epoch" and stage0.run_name == "fold1-stage0"
    # random batches because stage 0's items have no length column to sort by
    labels = PseudoLabels.from_clips(["a.wav"], [np.zeros(3, np.int64)])
    assert set(PseudoLabelDataset(labels)[0]) == {"audio", "labels"}
    assert schema.FIXED_TRAINING_ARGUMENTS["length_column_name"][0] not in PseudoLabelDataset(labels)[0]


def test_stage0_takes_the_training_sections_trainingarguments_fields(tmp_path):
    """`training:`'s TrainingArguments fields (gradient accumulation, a run_name prefix, save steps) reached stages 1
    and 2 but not stage 0: with `training.gradient_accumulation_steps: 3`, stage 0 took steps 3× smaller than asked,
    without a word."""
    training = {"gradient_accumulation_steps": 3, "dataloader_num_workers": 1, "run_name": "flea", "eval_steps": 5}
    config = resolve_checked_config(
        write_config(
            tmp_path / "run.yaml",
            training={**training, "eval_strategy": "steps", "save_strategy": "steps", "save_steps": 5},
        )  # fmt: skip
    )
    stage0 = stage0_training_arguments(config, Fold(1, ("m3",), ("m2",), ("m1",)), tmp_path / "stage0")
    assert (stage0.gradient_accumulation_steps, stage0.dataloader_num_workers) == (3, 1)
    assert stage0.run_name == "flea-fold1-stage0" and stage0.save_strategy == "steps" and stage0.save_steps == 5
    assert stage0.eval_strategy == "no"  # stage 0's override still wins: no validation audio is used
