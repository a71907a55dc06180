"""Configs are checked in full before anything trains: every problem at once (key, bad value, what is allowed),
exit code 2, no run directory; `TrainingArguments` fields pass through training:/stage1:/stage2:."""

import subprocess
import sys

import pytest
from helpers import REPO

from modeling.cli.train import main
from modeling.data.folds import Fold
from modeling.training.config_checks import resolve_checked_config
from modeling.training.run_config import resolve_config
from modeling.training.stage import training_arguments


DEMO = str(REPO / "configs" / "demo.yaml")
MATRIX = [
    ("stage2.lr_scheduler_type=linr", r"stage2.lr_scheduler_type must be one of \['linear', 'cosine'.*got 'linr'"),
    (
        "stage2.num_trainable_layers=six",
        r"stage2.num_trainable_layers must be null \(all\) or an integer >= 0, got 'six'",
    ),
    (
        "stage2.pooling=cls",
        r"stage2.pooling must be one of \['mean', 'attentive', 'self_attention', 'cls_attention'\], got 'cls'",
    ),
    ("stage2.gradient_accumulation_steps=0", r"stage2.gradient_accumulation_steps must be an integer >= 1, got 0"),
    ("stage2.warmup_ratio=1.5", r"stage2.warmup_ratio must be a number in \[0, 1\).*got 1.5"),
    (
        "stage1.epoch=3",
        r"unknown key 'stage1.epoch'; did you mean 'stage1.epochs'\? expected one of \[.*'epochs'.*\] or a "
        "TrainingArguments field",
    ),
    ("training.report_too=tensorboard", r"unknown key 'training.report_too'; did you mean 'training.report_to'\?"),
    ("modle.name_or_path=x", r"unknown key 'modle'; did you mean 'model'\? expected one of \['data', 'model'"),
    ("stage2.num_trainable_layers=3", r"stage2: the model config refuses.*between 0 and num_hidden_layers=2, got 3"),
    ("stage2.optim=adamw_fast", r"stage2.optim = 'adamw_fast': adamw_fast is not a valid OptimizerNames"),
    ("training.report_to=wandb", r"training.report_to = 'wandb': \['wandb'\] not installed"),
    ("stage1.eval_steps=3", r"stage1.eval_steps = 3 has no effect with eval_strategy 'epoch'"),
    ("stage1.output_dir=elsewhere", r"stage1.output_dir is set by train.py; set --output-dir instead"),
    ("data.folds=by_speaker", r"data.folds must be one of \[.*'predefined'\], got 'by_speaker'"),
]


@pytest.mark.parametrize("override, message", MATRIX, ids=[o for o, _ in MATRIX])
def test_each_bad_value_exits_2_before_training(tmp_path, capsys, override, message):
    output = tmp_path / "run"
    assert main(["--config", DEMO, "--output-dir", str(output), "--set", override]) == 2
    error = capsys.readouterr().err
    assert "1 problem(s) in" in error and "(nothing trained)" in error
    import re

    assert re.search(message, error), error
    assert not output.exists()


def test_train_py_lists_every_problem_at_once(tmp_path):
    """The issue's quoted values together, through the real train.py: all listed, exit 2, nothing written."""
    output = tmp_path / "run"
    overrides = [override for override, _ in MATRIX]
    command = [sys.executable, "train.py", "--config", DEMO, "--output-dir", str(output)]
    for override in overrides:
        command += ["--set", override]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    import re

    # stage2.num_trainable_layers is set twice (six, then 3): the last --set wins, so one line fewer.
    expected = [message for override, message in MATRIX if override != "stage2.num_trainable_layers=six"]
    assert f"{len(expected)} problem(s) in" in result.stderr, result.stderr
    for message in expected:
        assert re.search(message, result.stderr), (message, result.stderr)
    assert "Traceback" not in result.stderr and not output.exists()


def test_training_arguments_pass_through_and_runs_are_named_per_fold_and_stage():
    config = resolve_checked_config(
        DEMO,
        [
            "training.run_name=demo",
            "training.report_to=none",
            "stage2.eval_strategy=steps",
            "stage2.save_strategy=steps",
            "stage2.eval_steps=5",
            "stage2.save_steps=5",
            "training.logging_first_step=true",
        ],
    )
    fold = Fold(3, ("a",), ("b",), ("c",))
    stage1 = training_arguments(config, "stage1", fold, REPO / "unused" / "stage1")
    stage2 = training_arguments(config, "stage2", fold, REPO / "unused" / "stage2")
    assert (stage1.run_name, stage2.run_name) == ("demo-fold3-stage1", "demo-fold3-stage2")
    assert stage1.eval_strategy.value == "epoch" and stage1.logging_first_step is True
    assert stage2.eval_strategy.value == "steps" and stage2.eval_steps == 5 and stage2.save_steps == 5
    assert stage2.report_to in ("none", [], ["none"]) and stage2.logging_first_step is True
    plain = resolve_config(DEMO)
    assert training_arguments(plain, "stage2", fold, REPO / "unused").run_name == "fold3-stage2"
