"""Checkpoint selection by any metric the trainer computes (ua, wa, macro_f1, loss): the Trainer keeps the checkpoint
the metric picks (lower is better for loss), and results.json/results.md and the model card say which metric."""

import json

import numpy as np
import pytest
import torch
import yaml
from datasets import Dataset
from helpers import polish3_clips, tiny_config
from runs import write_run

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.metrics import compute_ser_metrics
from modeling.publishing.model_card import render_fold_card
from modeling.publishing.run import load_run
from modeling.training.results import aggregate, results_markdown
from modeling.training.run_config import DEFAULTS
from modeling.training.selection import selection_arguments


# A fixture where UA and macro-F1 disagree: 10 validation utterances, classes 0 (6), 1 (2), 2 (2).
REFERENCES = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
PREDICTIONS = [
    [0, 0, 0, 1, 1, 2, 1, 1, 2, 2],  # eager on the minority classes: UA 0.833, macro-F1 0.711
    [0, 0, 0, 0, 0, 0, 1, 0, 2, 0],  # conservative: UA 0.667, macro-F1 0.730
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # worst on both: UA 0.333, macro-F1 0.286
]


def test_the_fixture_disagrees_by_hand():
    first, second = (compute_ser_metrics(p, REFERENCES, 3) for p in PREDICTIONS[:2])
    assert first["ua"] == pytest.approx((3 / 6 + 1 + 1) / 3) and second["ua"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # F1 per class: 2PR / (P + R); first: (1, 1/2), (1/2, 1), (2/3, 1); second: (6/8, 1), (1, 1/2), (1, 1/2)
    f1 = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    assert first["macro_f1"] == pytest.approx((f1(1, 0.5) + f1(0.5, 1) + f1(2 / 3, 1)) / 3)
    assert second["macro_f1"] == pytest.approx((f1(0.75, 1) + f1(1, 0.5) + f1(1, 0.5)) / 3)
    assert first["ua"] > second["ua"] and first["macro_f1"] < second["macro_f1"]


def train_three_epochs(tmp_path, metric: str) -> FrameAlignedTrainer:
    """Three epochs of one step each, evaluated and saved every epoch; evaluation k scores PREDICTIONS[k] with the
    real metrics (the model's own predictions on 4 clips could not be made to disagree on purpose)."""
    clips = polish3_clips(4)
    dataset = Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]})
    evaluations = iter(PREDICTIONS)

    def compute_metrics(_):
        scores = compute_ser_metrics(next(evaluations), REFERENCES, 3)
        return {name: scores[name] for name in ("ua", "wa", "macro_f1")}

    torch.manual_seed(0)
    trainer = FrameAlignedTrainer(
        model=Wav2Vec2ForFrameAlignedClassification(tiny_config(pooling="attentive")),
        args=FrameAlignedTrainingArguments(
            output_dir=str(tmp_path / metric),
            num_train_epochs=3,
            per_device_train_batch_size=4,
            learning_rate=1e-2,
            eval_strategy="epoch",
            save_strategy="epoch",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            **selection_arguments(metric),
        ),
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor()),
        compute_metrics=compute_metrics,
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("metric, expected_step", [("ua", 1), ("macro_f1", 2), ("loss", None)])
def test_each_metric_keeps_its_own_checkpoint(tmp_path, metric, expected_step):
    trainer = train_three_epochs(tmp_path, metric)
    evaluations = [log for log in trainer.state.log_history if "eval_loss" in log]
    assert [log["step"] for log in evaluations] == [1, 2, 3]
    if metric == "loss":  # real validation losses: the lowest one, not the highest
        expected_step = min(evaluations, key=lambda log: log["eval_loss"])["step"]
        assert len({log["eval_loss"] for log in evaluations}) == 3
    assert trainer.state.best_global_step == expected_step
    assert (tmp_path / metric / f"checkpoint-{expected_step}").is_dir()


def test_results_and_card_name_the_selection_metric(tmp_path):
    run_dir = write_run(tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    config = {key: dict(value) if isinstance(value, dict) else value for key, value in DEFAULTS.items()}
    for section, values in results["config"].items():
        config[section] = {**config[section], **values} if isinstance(values, dict) else values
    config["stage2"]["metric_for_best_model"] = "macro_f1"
    folds = {int(k): fold for k, fold in results["folds"].items()}
    aggregated = aggregate(folds, config, results["labels"], results["num_folds"])
    assert aggregated["checkpoint_selection"] == {"stage1": "ua", "stage2": "macro_f1"}
    assert (
        "Checkpoints are selected on validation UA in stage 1 and on validation macro-F1 in stage 2."
        in results_markdown(aggregated)
    )
    (run_dir / "results.json").write_text(json.dumps({**results, "config": config}))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    run = load_run(run_dir)
    card = render_fold_card(run, run.folds["1"], "org/ser-fold1")
    assert "Validation speakers (the checkpoint is selected on their macro-F1): m2" in card
    assert np.isfinite(aggregated["mean"]["ua"])
