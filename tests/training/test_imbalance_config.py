"""train.py's imbalance, soft-label and selection options: every bad value listed before training, the stage's
TrainingArguments built from them, explicit weights and distributions checked against the corpus."""

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from runs import write_config

from modeling.data.folds import Fold
from modeling.trainer.loss_options import dataset_loss_problems
from modeling.training.config_checks import resolve_checked_config
from modeling.training.run_config import ConfigError
from modeling.training.stage import training_argument_values


def test_every_bad_option_is_listed_at_once(tmp_path):
    path = write_config(
        tmp_path / "bad.yaml",
        stage1={"class_weights": "balanced", "focal_gamma": -0.5, "metric_for_best_model": "f1"},
        stage2={"class_weights": {"anger": 0}, "soft_labels": True, "cache_frozen_prefix": True},
        training={"greater_is_better": False},
    )
    with pytest.raises(ConfigError) as error:
        resolve_checked_config(path)
    message = str(error.value)
    for expected in (
        "stage1.class_weights must be null, one of ['inverse', 'inverse_sqrt'] (from the training counts) or a "
        "mapping {class name: weight}, got 'balanced'.",
        "stage1.focal_gamma must be a number >= 0, got -0.5",
        "stage1.metric_for_best_model must be one of ['ua', 'wa', 'macro_f1', 'loss'], got 'f1'",
        "stage2.class_weights: weights must be finite numbers > 0, got {'anger': 0}.",
        "stage2.soft_labels does not work with stage2.cache_frozen_prefix",
        "training.greater_is_better is set by train.py; set nothing: it follows stage1/stage2.metric_for_best_model",
    ):
        assert expected in message
    assert message.startswith("6 problem(s)")


@pytest.mark.parametrize("metric, greater", [("ua", True), ("macro_f1", True), ("wa", True), ("loss", False)])
def test_the_selection_metric_and_its_direction_reach_the_trainer(tmp_path, metric, greater):
    path = write_config(
        tmp_path / "ok.yaml",
        stage2={"metric_for_best_model": metric, "class_weights": "inverse_sqrt", "focal_gamma": 2},
    )
    config = resolve_checked_config(path)
    values = training_argument_values(config, "stage2", Fold(1, (), (), ()), tmp_path)
    assert (values["metric_for_best_model"], values["greater_is_better"]) == (metric, greater)
    assert values["class_weights"] == "inverse_sqrt" and values["focal_gamma"] == 2.0
    stage1 = training_argument_values(config, "stage1", Fold(1, (), (), ()), tmp_path)
    assert (stage1["metric_for_best_model"], stage1["class_weights"], stage1["focal_gamma"]) == ("ua", None, 0.0)


def corpus(distributions):
    features = Features(
        {
            "audio": Value("string"),
            "label": ClassLabel(names=["anger", "fear", "neutral"]),
            "label_distribution": Sequence(Value("float64")),
        }
    )
    rows = {"audio": [f"a{i}.wav" for i in range(len(distributions))], "label": [0] * len(distributions)}
    return Dataset.from_dict({**rows, "label_distribution": distributions}, features=features)


def test_weights_and_distributions_are_checked_against_the_corpus():
    dataset = corpus([[1.0, 0.0, 0.0], [0.5, 0.4, 0.0], [0.5, 0.5]])
    settings = {
        "stage1": {"class_weights": {"anger": 1.0, "joy": 2.0, "neutral": 1.0}, "focal_gamma": 0.0},
        "stage2": {"class_weights": None, "focal_gamma": 0.0, "soft_labels": True},
    }
    assert dataset_loss_problems(settings, dataset) == [
        "stage1.class_weights: unknown class(es) ['joy']; the classes are ['anger', 'fear', 'neutral'].",
        "stage1.class_weights: no weight for class(es) ['fear']; one per class ['anger', 'fear', 'neutral'].",
        "label_distribution, row 1 (a1.wav): sums to 0.9, not 1: [0.5, 0.4, 0.0].",
        "label_distribution, row 2 (a2.wav): has 2 values, expected 3 (one per class).",
    ]
    plain = dataset.remove_columns("label_distribution")
    assert dataset_loss_problems({"stage2": {"soft_labels": True}}, plain) == [
        "stage2.soft_labels: the corpus has no 'label_distribution' column (its loader does not read annotator "
        "votes; columns: ['audio', 'label'])."
    ]
