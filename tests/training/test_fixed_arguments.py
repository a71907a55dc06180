"""Issue 20: stage.py's `training_argument_values` spelled the TrainingArguments train.py fixes beside schema.py's
`FIXED_TRAINING_ARGUMENTS`: two owners of one fact. schema.py owns them (value and what to set instead); every one
reaches each stage's TrainingArguments with the schema's value, and a config setting one is refused."""

import pytest
from runs import write_config

from modeling.data.folds import Fold
from modeling.training import schema
from modeling.training.config_checks import resolve_checked_config
from modeling.training.run_config import ConfigError
from modeling.training.stage import training_argument_values


@pytest.mark.parametrize("stage", schema.STAGES)
def test_every_fixed_training_argument_comes_from_the_schema(tmp_path, stage):
    config = resolve_checked_config(write_config(tmp_path / "ok.yaml"))
    values = training_argument_values(config, stage, Fold(1, (), (), ()), tmp_path / "out")
    assert set(schema.FIXED_TRAINING_ARGUMENTS) <= set(values)
    fixed = {name: value for name, (value, _) in schema.FIXED_TRAINING_ARGUMENTS.items() if value is not None}
    assert fixed == {
        "load_best_model_at_end": False,
        "remove_unused_columns": False,
        "train_sampling_strategy": "group_by_length",
        "length_column_name": "duration_s",
    }
    assert {name: values[name] for name in fixed} == fixed
    assert values["output_dir"] == str(tmp_path / "out") and values["seed"] == values["data_seed"]


@pytest.mark.bad_input
def test_a_config_setting_a_fixed_argument_is_refused_with_what_to_set_instead(tmp_path):
    path = write_config(tmp_path / "bad.yaml", stage1={"remove_unused_columns": True})
    with pytest.raises(ConfigError, match=r"stage1.remove_unused_columns is set by train.py; set nothing: the coll"):
        resolve_checked_config(path)
